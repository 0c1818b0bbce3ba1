"""moto's server for the tests that enforce IAM, taught two things AWS does that moto does not
for SNS.

- moto checks every SNS action against the resource "*", so a policy that allows sns:Publish on
  one topic (what SAM's SNSPublishMessagePolicy writes, and what AWS checks: the topic's ARN) is
  refused. Here SNS actions are checked against the topic they name.
- moto verifies a form-encoded (query protocol) request's signature over the form re-encoded by
  Python, not over the bytes that were signed, so an SDK that encodes a space as %20 (the Rust
  SDK) fails where AWS accepts it. Here the body as sent is kept and verified.

Every other service is moto's own. Usage: moto_server.py [moto_server's arguments]
"""

import io
import sys

import moto.server
from moto.sns.responses import SNSResponse

RAW_BODY = "sfpipe.raw_body"


def keep_raw_body(application):
    """WSGI middleware: the request's body, read once, kept in the environ and given back."""

    def wrapped(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ[RAW_BODY] = body
        environ["wsgi.input"] = io.BytesIO(body)
        return application(environ, start_response)

    return wrapped


_run_simple = moto.server.run_simple


def run_simple(hostname, port, application, *args, **kwargs):
    return _run_simple(hostname, port, keep_raw_body(application), *args, **kwargs)


moto.server.run_simple = run_simple


def _determine_resource(self):
    return self._get_param("TopicArn") or self._get_param("TargetArn") or "*"


_authorize = SNSResponse._authenticate_and_authorize_normal_action


def _authorize_signed_bytes(self, resource="*"):
    environ = getattr(self.normalized_request, "environ", {})
    if not self.raw_body and environ.get(RAW_BODY):
        self.raw_body = environ[RAW_BODY]
    return _authorize(self, resource)


SNSResponse._determine_resource = _determine_resource
SNSResponse._authenticate_and_authorize_normal_action = _authorize_signed_bytes

if __name__ == "__main__":
    sys.exit(moto.server.main(sys.argv[1:]))
