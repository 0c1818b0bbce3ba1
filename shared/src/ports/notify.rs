//! The notification port: a notice to the people who run sfpipe (on AWS the alarm topic, whose
//! subscribers get an email or a chat message), sent for each dead letter sfpipe writes.

use async_trait::async_trait;

/// The limits on a notice, applied by every adapter alike: a subject under 100 characters of
/// printable ASCII on one line (SNS refuses anything else), and a message of at most 64 KiB
/// (SNS takes 256 KiB, but a subscribed SQS queue counts SNS's JSON envelope against its own
/// 256 KiB, and an email or a chat message is no place for more).
pub const MAX_SUBJECT_CHARS: usize = 99;
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub subject: String,
    pub message: String,
}

impl Notice {
    /// A notice within the limits: the subject made printable ASCII on one line (a line break
    /// or another control character becomes a space, any other character `?`) and cut to
    /// [`MAX_SUBJECT_CHARS`]; the message cut at a character boundary to [`MAX_MESSAGE_BYTES`].
    pub fn new(subject: &str, message: &str) -> Self {
        let subject: String = subject
            .chars()
            .map(|c| match c {
                c if c.is_ascii_graphic() => c,
                c if c.is_control() || c.is_whitespace() => ' ',
                _ => '?',
            })
            .take(MAX_SUBJECT_CHARS)
            .collect();
        let subject = subject.trim().to_string();
        let mut end = message.len().min(MAX_MESSAGE_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            subject: if subject.is_empty() {
                "sfpipe".into()
            } else {
                subject
            },
            message: message[..end].to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "notification to {target}: access denied ({message}): the function's role lacks \
         sns:Publish (or the topic key's kms:GenerateDataKey); grant it in template.yaml"
    )]
    AccessDenied { target: String, message: String },
    #[error("notification to {target}: {message}")]
    Service { target: String, message: String },
}

#[async_trait]
pub trait Notifier: Send + Sync {
    /// Where notices go (a topic ARN, a file), for logs and errors.
    fn target(&self) -> &str;
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_keeps_to_the_limits() {
        let notice = Notice::new(
            "upload dead letter: Zürich__c\nsecond line",
            &"é".repeat(MAX_MESSAGE_BYTES),
        );
        assert_eq!(notice.subject, "upload dead letter: Z?rich__c second line");
        assert!(notice.message.len() <= MAX_MESSAGE_BYTES);
        assert!(notice.message.chars().all(|c| c == 'é'));
        assert_eq!(Notice::new(&"x".repeat(300), "m").subject.len(), 99);
        assert_eq!(Notice::new("\n", "m").subject, "sfpipe");
    }
}
