//! A [`Hub`] whose topics span nodes: the hub's first/last-subscriber hook drives the broker's
//! join and leave, and a task hands what the broker delivers to the hub's encode-once path.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::Broker;
use super::error::BrokerError;
use super::event::{Delivery, Event, Events};
use super::position::Position;
use crate::hub::{Hub, HubBuilder, SocketId, TopicEvent};
use crate::proto::Message;

type Render = dyn Fn(&Delivery) -> Message + Send + Sync;
type OnEvent = dyn Fn(&Event) + Send + Sync;

/// Builds a [`Cluster`]: the broker, its events, and how the local hub is made.
pub struct ClusterBuilder {
    broker: Broker,
    events: Events,
    hub: HubBuilder,
    render: Option<Box<Render>>,
    on_event: Option<Box<OnEvent>>,
}

impl fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl ClusterBuilder {
    /// The local hub's settings (per-socket limit, slow policy). Its `on_topic` hook is
    /// replaced by the one that joins and leaves broker topics.
    #[must_use]
    pub fn hub(mut self, hub: HubBuilder) -> Self {
        self.hub = hub;
        self
    }

    /// What local subscribers receive for a delivery; by default the published message as it
    /// is (no copy). A chat can add the message's [`Position`] here, so that its clients know
    /// where to resume from. Runs once per delivery per node, not per subscriber.
    #[must_use]
    pub fn render(mut self, render: impl Fn(&Delivery) -> Message + Send + Sync + 'static) -> Self {
        self.render = Some(Box::new(render));
        self
    }

    /// Called with every event after it is handled (a message after it is handed to the hub):
    /// gaps, bad data, connection changes. By default they are logged with `tracing`.
    #[must_use]
    pub fn on_event(mut self, on_event: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Box::new(on_event));
        self
    }

    /// Builds the hub and starts the task that feeds it. Must be called inside a Tokio runtime.
    pub fn start(self) -> Cluster {
        let joiner = self.broker.clone();
        let hub = self
            .hub
            .on_topic(move |topic, event| match event {
                TopicEvent::First => joiner.join(topic),
                TopicEvent::Last => joiner.leave(topic),
            })
            .build();
        let task = tokio::spawn(bridge(
            hub.clone(),
            self.broker.node_id(),
            self.events,
            self.render,
            self.on_event,
        ));
        Cluster {
            inner: Arc::new(Inner {
                hub,
                broker: self.broker,
                task,
            }),
        }
    }
}

/// A hub for one node of many: sockets join and subscribe on [`hub`](Self::hub) as usual,
/// and [`publish`](Self::publish) reaches the subscribers of every node, through the broker.
///
/// Cheap to clone. The task that feeds the hub stops when the last clone is dropped.
///
/// ```no_run
/// use tower_ws::Message;
/// use tower_ws::broker::{Broker, Cluster, RedisConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let (broker, events) = Broker::redis("redis://127.0.0.1:6379", RedisConfig::default())?;
/// let cluster = Cluster::builder(broker, events).start();
/// // In a handler: let member = cluster.hub().join(&mut socket); member.subscribe("room");
/// cluster.publish("room", &Message::text("to every node")).await?;
/// # Ok(())
/// # }
/// # fn main() { let _ = run; }
/// ```
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    broker: Broker,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("broker", &self.inner.broker)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A builder for a cluster node on `broker`, fed by its `events`.
    pub fn builder(broker: Broker, events: Events) -> ClusterBuilder {
        ClusterBuilder {
            broker,
            events,
            hub: Hub::builder(),
            render: None,
            on_event: None,
        }
    }

    /// The local hub: join sockets and subscribe them here. Its own
    /// [`publish`](Hub::publish) stays local to this node.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The broker connection.
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    /// Publishes to the subscribers of `topic` on every node (this one included, when the
    /// broker delivers it back, so that every node sees the same order). Queued at the call,
    /// as [`Broker::publish`].
    ///
    /// # Errors
    ///
    /// As [`Broker::publish`].
    pub fn publish(
        &self,
        topic: &str,
        message: &Message,
    ) -> impl Future<Output = Result<Option<Position>, BrokerError>> + Send + use<> {
        self.inner.broker.publish(topic, message)
    }

    /// As [`publish`](Self::publish), to all but the socket `except` of this node.
    ///
    /// # Errors
    ///
    /// As [`Broker::publish`].
    pub fn publish_except(
        &self,
        topic: &str,
        message: &Message,
        except: SocketId,
    ) -> impl Future<Output = Result<Option<Position>, BrokerError>> + Send + use<> {
        self.inner.broker.publish_except(topic, message, except)
    }
}

async fn bridge(
    hub: Hub,
    node_id: u64,
    mut events: Events,
    render: Option<Box<Render>>,
    on_event: Option<Box<OnEvent>>,
) {
    while let Some(event) = events.recv().await {
        if let Event::Message(delivery) = &event {
            let message = match &render {
                Some(render) => render(delivery),
                None => delivery.message.clone(),
            };
            match delivery.except {
                Some(except) if delivery.origin == node_id => {
                    hub.publish_except(&delivery.topic, message, SocketId::from_u64(except));
                }
                _ => {
                    hub.publish(&delivery.topic, message);
                }
            }
        }
        match &on_event {
            Some(on_event) => on_event(&event),
            None => log(&event),
        }
    }
}

fn log(event: &Event) {
    match event {
        Event::Message(_) => {}
        Event::Gap {
            topic,
            reason,
            resume,
        } => tracing::warn!(?topic, ?reason, ?resume, "messages lost between nodes"),
        Event::BadData { topic, error } => {
            tracing::warn!(%topic, %error, "bad data from the broker");
        }
        Event::Connected => tracing::info!("broker connected"),
        Event::Disconnected => tracing::warn!("broker disconnected"),
    }
}
