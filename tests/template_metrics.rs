//! The template's dashboard and freshness alarm watch the metrics the functions write (their
//! EMF lines, `shared/src/metrics.rs`): the same namespace, names and dimension; and the
//! template's retention bounds agree with each other; and its functions' timeouts and queues'
//! visibility timeouts are the ones the handlers budget for (`shared/src/deadline.rs`). cfn-lint checks
//! the template's shape (`scripts/test`); this checks that it and the code agree, and that the
//! dashboard's body is JSON once CloudFormation has substituted it.

use sfpipe_shared::metrics::{METRICS, NAMESPACE, STACK_DIMENSION};

const TEMPLATE: &str = include_str!("../template.yaml");

/// The text of one resource: from its name to the next line indented as a resource name.
fn resource(name: &str) -> &'static str {
    let start = TEMPLATE
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no resource {name} in template.yaml"))
        + 1;
    let rest = &TEMPLATE[start..];
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| {
            let line = &rest[i..];
            line.starts_with("  ") && !line.starts_with("   ")
                || line.starts_with(|c: char| c.is_alphabetic())
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn the_freshness_alarm_watches_the_metric_the_job_loader_writes() {
    let alarm = resource("FreshnessAlarm");
    assert!(
        alarm.contains(&format!("Namespace: {NAMESPACE}\n")),
        "{alarm}"
    );
    assert!(
        alarm.contains("MetricName: FreshnessLagSeconds\n"),
        "{alarm}"
    );
    assert!(
        METRICS
            .iter()
            .any(|(name, _)| *name == "FreshnessLagSeconds")
    );
    assert!(
        alarm.contains(&format!("- Name: {STACK_DIMENSION}\n")),
        "{alarm}"
    );
    assert!(alarm.contains("Value: !Ref AWS::StackName"), "{alarm}");
    assert!(alarm.contains("AlarmActions: [!Ref AlarmTopic]"), "{alarm}");
    assert!(
        TEMPLATE.contains("SFPIPE_STACK_NAME: !Ref AWS::StackName"),
        "the functions must know the stack's name to write the dimension"
    );
}

#[test]
fn the_dashboard_is_json_and_shows_every_metric() {
    let dashboard = resource("Dashboard");
    let body_start = dashboard
        .find("- |\n")
        .expect("the body as a literal block")
        + 4;
    let body_end = dashboard[body_start..]
        .find("\n        - Threshold")
        .expect("the body's substitutions")
        + body_start;
    // What CloudFormation's Fn::Sub leaves: every ${...} replaced.
    let mut body = String::new();
    let mut rest = &dashboard[body_start..body_end];
    while let Some(i) = rest.find("${") {
        body.push_str(&rest[..i]);
        let close = rest[i..].find('}').expect("a closed ${") + i;
        let name = &rest[i + 2..close];
        body.push_str(if name == "Threshold" { "86400" } else { "x" });
        rest = &rest[close + 1..];
    }
    body.push_str(rest);
    let parsed: serde_json::Value =
        serde_json::from_str(&body).expect("the dashboard body is JSON");
    let shown: Vec<String> = parsed["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .flat_map(|w| {
            w["properties"]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|m| m[0] == NAMESPACE)
        .map(|m| {
            assert_eq!(m[2], STACK_DIMENSION, "{m}");
            m[1].as_str().unwrap().to_string()
        })
        .collect();
    for (name, _) in METRICS {
        assert!(
            shown.iter().any(|s| s == name),
            "{name} is not on the dashboard"
        );
    }
}

/// A dead letter names its run's parts; a redrive within the dead letter's life must find them,
/// so parts may never expire before the longest-kept dead letter does.
#[test]
fn parts_outlive_every_dead_letter_that_names_them() {
    let parameter = &TEMPLATE[TEMPLATE
        .find("\n  RawFileRetentionDays:\n")
        .expect("the parameter")..];
    let min_days: u64 = parameter
        .lines()
        .find_map(|l| l.trim().strip_prefix("MinValue: "))
        .expect("a MinValue")
        .parse()
        .unwrap();
    let longest_dead_letter_seconds: u64 = TEMPLATE
        .lines()
        .filter_map(|l| l.trim().strip_prefix("MessageRetentionPeriod: "))
        .map(|v| v.parse::<u64>().unwrap())
        .max()
        .expect("queues with a retention");
    assert!(
        min_days * 86_400 > longest_dead_letter_seconds,
        "parts may expire after {min_days} days, a dead letter is kept {} days",
        longest_dead_letter_seconds / 86_400
    );
}

/// The number after `key: ` in a resource's text.
fn seconds(resource_text: &str, key: &str) -> u64 {
    resource_text
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {resource_text}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number of seconds"))
}

#[test]
fn function_and_visibility_timeouts_are_the_ones_the_handlers_budget_for() {
    use sfpipe_shared::deadline::StageLimits;
    let limits = StageLimits::TEMPLATE;
    for (function, queue, stage) in [
        ("JobLoaderFunction", None, limits.job_loader),
        ("ExtractFunction", Some("ExtractQueue"), limits.extract),
        ("UploadFunction", Some("UploadQueue"), limits.upload),
        ("MergeFunction", Some("MergeQueue"), limits.merge),
    ] {
        assert_eq!(
            seconds(resource(function), "Timeout"),
            stage.timeout.as_secs(),
            "{function}"
        );
        if let Some(queue) = queue {
            let visibility = seconds(resource(queue), "VisibilityTimeout");
            assert_eq!(
                Some(visibility),
                stage.visibility_timeout.map(|v| v.as_secs()),
                "{queue}"
            );
            // AWS: at least six times the function's timeout for an SQS event source.
            assert!(visibility >= 6 * stage.timeout.as_secs(), "{queue}");
        }
    }
}

/// A parameter's `AllowedPattern`, as written in the template.
fn allowed_pattern(parameter: &str) -> String {
    let text = resource(parameter);
    let line = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("AllowedPattern: "))
        .unwrap_or_else(|| panic!("{parameter} has no AllowedPattern"));
    serde_json::from_str(line).expect("the pattern is a double-quoted string")
}

/// The Snowflake stage role's trust is given whole or not at all: the deploy refuses one of
/// the user ARN and external id without the other (the rule), and a value that is not what
/// DESC INTEGRATION shows (the patterns, checked here with Python's `re`, which reads these
/// patterns as CloudFormation's Java regular expressions do).
#[test]
fn the_snowflake_trust_is_refused_unless_given_whole() {
    let rule = resource("SnowflakeTrustGivenWhole");
    for part in [
        "- !Equals [!Ref SnowflakeIamUserArn, \"\"]",
        "- !Equals [!Ref SnowflakeExternalId, \"\"]",
        "- !Not [!Equals [!Ref SnowflakeIamUserArn, \"\"]]",
        "- !Not [!Equals [!Ref SnowflakeExternalId, \"\"]]",
        "AssertDescription:",
    ] {
        assert!(rule.contains(part), "{part} in {rule}");
    }
    let cases = serde_json::json!([
        [allowed_pattern("SnowflakeIamUserArn"), "", true],
        [
            allowed_pattern("SnowflakeIamUserArn"),
            "arn:aws:iam::123456789012:user/abc1-b-self1234",
            true
        ],
        [
            allowed_pattern("SnowflakeIamUserArn"),
            "arn:aws:iam::123456789012:role/snowflake",
            false
        ],
        [
            allowed_pattern("SnowflakeIamUserArn"),
            "STORAGE_AWS_IAM_USER_ARN",
            false
        ],
        [allowed_pattern("SnowflakeExternalId"), "", true],
        [
            allowed_pattern("SnowflakeExternalId"),
            "MYACCOUNT_SFCRole=2_a123456/s0aBCDEfGHIJklmNoPq=",
            true
        ],
        [allowed_pattern("SnowflakeExternalId"), "two words", false],
    ]);
    let script = "import json, re, sys\n\
                  for pattern, value, allowed in json.load(sys.stdin):\n\
                  \x20   if (re.fullmatch(pattern, value) is not None) != allowed:\n\
                  \x20       sys.exit(f'{pattern!r} on {value!r}: expected {allowed}')\n";
    let mut child = std::process::Command::new(sfpipe_tests::venv_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python (./scripts/tools makes the venv, or set SFPIPE_PYTHON)");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(cases.to_string().as_bytes())
            .expect("write the cases");
    }
    assert!(child.wait().expect("python ran").success());
}

/// Each dead letter reaches the alarm topic: the functions know the topic and the queues'
/// maxReceiveCount (they dead-letter one receive earlier themselves), the three stage functions
/// may publish to the topic and use its key, and the default leaves them five tries.
#[test]
fn the_stage_functions_send_each_dead_letter_to_the_alarm_topic() {
    assert!(TEMPLATE.contains("SFPIPE_ALARM_TOPIC_ARN: !Ref AlarmTopic"));
    assert!(TEMPLATE.contains("SFPIPE_MAX_RECEIVES: !Ref MaxReceiveCount"));
    let parameter = resource("MaxReceiveCount");
    assert!(
        parameter.contains(&format!(
            "Default: {}\n",
            sfpipe_shared::worker::DEFAULT_MAX_RECEIVES
        )),
        "{parameter}"
    );
    assert_eq!(
        sfpipe_shared::worker::tries(sfpipe_shared::worker::DEFAULT_MAX_RECEIVES),
        5
    );
    for function in ["ExtractFunction", "UploadFunction", "MergeFunction"] {
        let text = resource(function);
        assert!(
            text.contains(
                "- SNSPublishMessagePolicy:\n            TopicName: !GetAtt AlarmTopic.TopicName"
            ),
            "{function} may not publish to the alarm topic"
        );
        assert!(
            text.contains("Action: [kms:GenerateDataKey*, kms:Decrypt]\n              Resource: !GetAtt AlarmTopicKey.Arn"),
            "{function} may not use the alarm topic's key"
        );
    }
    for queue in ["ExtractQueue", "UploadQueue", "MergeQueue"] {
        assert!(
            resource(queue).contains("maxReceiveCount: !Ref MaxReceiveCount"),
            "{queue}"
        );
    }
}
