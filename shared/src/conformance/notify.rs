//! What every notifier must do: deliver each notice whole, and keep a notice a service would
//! refuse (a subject on two lines, not ASCII, too long; a message too long) within its limits
//! instead of losing it.

use async_trait::async_trait;

use crate::ports::notify::MAX_MESSAGE_BYTES;
use crate::ports::{Notice, Notifier};

/// The notices that reached the other end (a queue subscribed to the topic, the file), in any
/// order, waiting a little for those still on their way.
#[async_trait]
pub trait Delivered: Send + Sync {
    async fn delivered(&self, at_least: usize) -> Vec<Notice>;
}

async fn send(notifier: &dyn Notifier, notice: Notice) {
    notifier
        .notify(&notice)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", notifier.target()));
}

pub async fn each_notice_arrives_whole(notifier: &dyn Notifier, delivered: &dyn Delivered) {
    let notices: Vec<Notice> = (1..=3)
        .map(|n| {
            Notice::new(
                &format!("sfpipe: upload dead letter {n}: Account"),
                &format!("object: Account\nreason: failed {n} times — café \"quoted\"\n"),
            )
        })
        .collect();
    for notice in &notices {
        send(notifier, notice.clone()).await;
    }
    let mut got = delivered.delivered(notices.len()).await;
    got.sort_by(|a, b| a.subject.cmp(&b.subject));
    assert_eq!(got, notices, "{}", notifier.target());
}

pub async fn a_notice_a_service_would_refuse_is_kept_within_its_limits(
    notifier: &dyn Notifier,
    delivered: &dyn Delivered,
) {
    let subject = format!("merge dead letter:\n{}", "Zürich__c ".repeat(20));
    let message = "x".repeat(MAX_MESSAGE_BYTES + 10_000);
    // Built by hand, past the limits: the adapter keeps it within them.
    send(
        notifier,
        Notice {
            subject: subject.clone(),
            message,
        },
    )
    .await;
    let got = delivered.delivered(1).await;
    assert_eq!(got.len(), 1, "{}", notifier.target());
    assert_eq!(
        got[0],
        Notice::new(&subject, &"x".repeat(MAX_MESSAGE_BYTES))
    );
    assert!(got[0].subject.starts_with("merge dead letter: Z?rich__c"));
}

/// Each test reads what arrived since the last, so each gets a fresh `delivered`.
pub async fn run_all(notifier: &dyn Notifier, delivered: &dyn Delivered) {
    each_notice_arrives_whole(notifier, delivered).await;
    a_notice_a_service_would_refuse_is_kept_within_its_limits(notifier, delivered).await;
}
