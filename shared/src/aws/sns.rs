//! Notices to an SNS topic (the stack's alarm topic), whose subscribers get each one.

use async_trait::async_trait;
use aws_sdk_sns::Client;

use crate::ports::{Notice, Notifier, NotifyError};

#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    fn target(&self) -> &str {
        &self.topic_arn
    }

    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        // The port's limits again, so a notice built by hand cannot be refused by SNS.
        let notice = Notice::new(&notice.subject, &notice.message);
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(notice.subject)
            .message(notice.message)
            .send()
            .await
            .map(|_| ())
            .map_err(|error| {
                let message = super::describe(&error);
                if super::is_access_denied(&error)
                    || message.contains("AuthorizationError")
                    || message.contains("KMSAccessDenied")
                {
                    NotifyError::AccessDenied {
                        target: self.topic_arn.clone(),
                        message,
                    }
                } else {
                    NotifyError::Service {
                        target: self.topic_arn.clone(),
                        message,
                    }
                }
            })
    }
}
