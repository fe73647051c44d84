//! The node's publish queue: publishes are queued in call order when `publish` is called, and
//! one task sends them to the broker, as many per round trip as have queued up (a Redis
//! pipeline), so a publisher need not wait for one publish before making the next.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::envelope::PREFIX_LEN;
use super::error::{BrokerError, BrokerErrorKind};
use super::position::Position;
use super::stats::{Counters, bump};

/// Publishes waiting for the broker at most; past it `publish` fails at once.
pub(crate) const QUEUE_CAPACITY: usize = 4096;
/// Publishes sent in one round trip at most (Redis).
#[cfg(feature = "redis")]
pub(crate) const BATCH: usize = 256;

/// What a publish hands the queue task.
pub(crate) struct Request {
    pub(crate) topic: Box<str>,
    pub(crate) prefix: [u8; PREFIX_LEN],
    pub(crate) payload: Bytes,
    pub(crate) reply: oneshot::Sender<Result<Option<Position>, BrokerError>>,
}

pub(crate) type Queue = mpsc::Sender<Request>;

/// Queues a publish now and returns the future of its answer.
pub(crate) fn enqueue(
    queue: &Queue,
    counters: &Arc<Counters>,
    op_timeout: Duration,
    topic: &str,
    prefix: [u8; PREFIX_LEN],
    payload: Bytes,
) -> impl Future<Output = Result<Option<Position>, BrokerError>> + Send + use<> {
    let (reply, answer) = oneshot::channel();
    let request = Request {
        topic: topic.into(),
        prefix,
        payload,
        reply,
    };
    let queued = queue.try_send(request).map_err(|error| {
        let why = match error {
            mpsc::error::TrySendError::Full(_) => {
                format!("{QUEUE_CAPACITY} publishes already wait for the broker")
            }
            mpsc::error::TrySendError::Closed(_) => String::from("the publish task stopped"),
        };
        BrokerError::new(
            BrokerErrorKind::Unavailable,
            format!("publish to {topic:?}: {why}"),
        )
    });
    let counters = counters.clone();
    // Saturating: `op_timeout` may be `Duration::MAX` ("no timeout"), which `* 3` overflows.
    let bound = op_timeout.saturating_mul(3);
    async move {
        let result = match queued {
            Err(error) => Err(error),
            // The task answers within two of its own timeouts (the batch before, and this
            // one); this bound only guards against a task that stopped answering.
            Ok(()) => match tokio::time::timeout(bound, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(BrokerError::new(
                    BrokerErrorKind::Closed,
                    "publish: the publish task stopped",
                )),
                Err(_) => Err(BrokerError::new(
                    BrokerErrorKind::Unavailable,
                    format!("publish: no answer within {bound:?}"),
                )),
            },
        };
        bump(if result.is_ok() {
            &counters.published
        } else {
            &counters.publish_failures
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[tokio::test]
    async fn a_publish_whose_timeout_is_duration_max_waits_for_its_answer() {
        let (queue, mut requests) = mpsc::channel(1);
        let counters = Arc::new(Counters::default());
        let answer = enqueue(
            &queue,
            &counters,
            Duration::MAX,
            "prices",
            [0; PREFIX_LEN],
            Bytes::from_static(b"1.25"),
        );
        let request = requests.recv().await.unwrap();
        assert_eq!(
            (&*request.topic, &request.payload[..]),
            ("prices", &b"1.25"[..])
        );
        request.reply.send(Ok(None)).unwrap();
        assert!(matches!(answer.await, Ok(None)));
        assert_eq!(counters.published.load(Ordering::Relaxed), 1);
    }
}
