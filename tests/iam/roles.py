"""The IAM roles template.yaml gives each function, as IAM users on a moto server that enforces IAM.

SAM's own translator (aws-sam-translator, pinned in tests/requirements.txt, run offline) expands
template.yaml as `sam deploy` would; each function role's policies are resolved against the
resources the test created (queues, bucket) and attached to an IAM user of the same name, with the
managed policies SAM attaches written out from AWS's published documents
(aws_managed_policies.json). A call the template does not allow is then refused by moto, as AWS
would refuse it.

moto must run with INITIAL_NO_AUTH_ACTION_COUNT=4: this script spends those four unauthenticated
calls on an administrator for the test's own set-up, and everything after them is checked.

Usage: roles.py --endpoint URL --bindings FILE [--template template.yaml]
The bindings file: {"parameters": {name: value}, "resources": {logical id: {"Ref": ..., "Arn":
..., "QueueName": ...}}}. Prints JSON: {"admin": key, "functions": {binary: key},
"stage_reader": key}, each key {"access_key_id", "secret_access_key"}.
"""

import argparse
import json
import os
import re
import sys

import boto3
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::StackName": "sfpipe",
    "AWS::URLSuffix": "amazonaws.com",
}
HERE = os.path.dirname(os.path.abspath(__file__))


class NoManagedPolicyLookup:
    """SAM asks for the account's managed policy names only for policies named by name; the
    template names none, so nothing is looked up (no network)."""

    def load(self):
        return {}


def fail(message):
    print(f"iam/roles.py: {message}", file=sys.stderr)
    sys.exit(1)


class Resolver:
    def __init__(self, parameters, resources):
        self.parameters = parameters
        self.resources = resources

    def ref(self, name):
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources and "Ref" in self.resources[name]:
            return self.resources[name]["Ref"]
        fail(f"the template refers to {name}, which the test did not create or set")

    def attribute(self, name, attribute):
        value = self.resources.get(name, {}).get(attribute)
        if value is None:
            fail(f"the template needs {name}.{attribute}, which the test did not create")
        return value

    def sub(self, text, variables):
        def one(match):
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return str(self.attribute(resource, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resolve(self, value):
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.attribute(resource, attribute)
            if key == "Fn::Sub":
                if isinstance(argument, list):
                    return self.sub(argument[0], argument[1])
                return self.sub(argument, {})
            if key == "Fn::Join":
                return argument[0].join(str(v) for v in self.resolve(argument[1]))
            if key.startswith("Fn::"):
                fail(f"{key} in a policy is not resolved by this test; extend iam/roles.py")
        return {k: self.resolve(v) for k, v in value.items()}


def translated(template_path, parameters):
    template = yaml_parse(open(template_path).read())
    functions = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            # What `sam build` / `sam package` do before the transform: code in S3.
            resource["Properties"]["CodeUri"] = "s3://sfpipe-artifacts/code.zip"
            functions[name] = resource["Metadata"]["BuildProperties"]["Binary"]
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    output = transform(template, dict(parameters), NoManagedPolicyLookup())
    return functions, output["Resources"]


def role_policies(role, resolver, managed):
    documents = []
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        arn = resolver.resolve(arn)
        if arn not in managed:
            fail(f"managed policy {arn} is not written out in aws_managed_policies.json")
        documents.append(managed[arn])
    for policy in role["Properties"].get("Policies", []):
        document = resolver.resolve(policy["PolicyDocument"])
        document.setdefault("Version", "2012-10-17")
        documents.append(document)
    return documents


def statements(documents):
    for document in documents:
        listed = document["Statement"]
        for statement in listed if isinstance(listed, list) else [listed]:
            if statement.get("Effect") == "Allow":
                yield statement


def as_list(value):
    return value if isinstance(value, list) else [value]


def check_what_moto_does_not_model(name, documents, bucket_arn):
    """Where moto is kinder than AWS, the rule is checked here instead."""
    allowed = list(statements(documents))
    reads = any("s3:GetObject" in as_list(s["Action"]) for s in allowed)
    lists = any(
        "s3:ListBucket" in as_list(s["Action"]) and bucket_arn in as_list(s["Resource"])
        for s in allowed
    )
    # S3 answers a GET or HEAD of a missing key with 403 instead of 404 unless the caller may
    # list the bucket; moto always answers 404. The functions test for markers by their absence.
    if reads and not lists:
        fail(
            f"{name} reads objects but may not list {bucket_arn}: S3 would answer every missing "
            "marker with 403 AccessDenied instead of 404"
        )


NAMED_IAM = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
}


def check_capabilities(template_path):
    """A named IAM resource needs CAPABILITY_NAMED_IAM, which neither samconfig.toml nor
    `sam deploy --guided` grants: the first deploy would fail."""
    import tomllib

    template = yaml_parse(open(template_path).read())
    samconfig = os.path.join(os.path.dirname(template_path), "samconfig.toml")
    capabilities = tomllib.load(open(samconfig, "rb"))["default"]["deploy"]["parameters"]["capabilities"]
    for name, resource in template["Resources"].items():
        field = NAMED_IAM.get(resource["Type"])
        if field and field in resource.get("Properties", {}) and "CAPABILITY_NAMED_IAM" not in capabilities:
            fail(f"{name} sets {field}, which needs CAPABILITY_NAMED_IAM; samconfig.toml grants {capabilities}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bindings", required=True)
    parser.add_argument("--template", default=os.path.join(HERE, "..", "..", "template.yaml"))
    args = parser.parse_args()
    check_capabilities(args.template)
    bindings = json.load(open(args.bindings))
    managed = json.load(open(os.path.join(HERE, "aws_managed_policies.json")))
    resolver = Resolver(bindings["parameters"], bindings["resources"])
    functions, resources = translated(args.template, bindings["parameters"])

    def iam(key=None):
        credentials = key or {"access_key_id": "bootstrap", "secret_access_key": "bootstrap"}
        return boto3.client(
            "iam",
            endpoint_url=args.endpoint,
            region_name=REGION,
            aws_access_key_id=credentials["access_key_id"],
            aws_secret_access_key=credentials["secret_access_key"],
        )

    def user_with(client, name, documents):
        client.create_user(UserName=name)
        for n, document in enumerate(documents):
            arn = client.create_policy(
                PolicyName=f"{name}-{n}", PolicyDocument=json.dumps(document)
            )["Policy"]["Arn"]
            client.attach_user_policy(UserName=name, PolicyArn=arn)
        key = client.create_access_key(UserName=name)["AccessKey"]
        return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}

    # The four unauthenticated calls: an administrator for the test's own set-up.
    bootstrap = iam()
    admin = user_with(
        bootstrap,
        "sfpipe-test-admin",
        [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}],
    )
    client = iam(admin)
    bucket_arn = resolver.attribute("DataBucket", "Arn")
    out = {"admin": admin, "functions": {}, "policies": {}}
    for logical, binary in functions.items():
        role = resources[f"{logical}Role"]
        documents = role_policies(role, resolver, managed)
        check_what_moto_does_not_model(binary, documents, bucket_arn)
        out["functions"][binary] = user_with(client, f"sfpipe-{binary}", documents)
        out["policies"][binary] = documents
    stage_role = resources["SnowflakeStageRole"]
    out["stage_reader"] = user_with(
        client, "sfpipe-snowflake-stage", role_policies(stage_role, resolver, managed)
    )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
