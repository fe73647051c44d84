//! [`ClientBuilder::connect_service`]: a WebSocket to a tower service, in the same process,
//! without a network: for testing routes.

use std::future::poll_fn;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tower_service::Service;

use super::ClientBuilder;
use crate::error::{BoxError, Error, Result};
use crate::proto::WebSocket;

/// How many bytes the in-memory pipe holds each way before a writer waits.
const PIPE_CAPACITY: usize = 64 << 10;

impl ClientBuilder {
    /// Opens a WebSocket to `service` (an axum `Router`, a tower stack with the
    /// [`UpgradeLayer`](crate::UpgradeLayer), any service hyper can serve) in this process:
    /// hyper's HTTP/1.1 server connection, with upgrades, serves `service` on one end of an
    /// in-memory pipe (`tokio::io::duplex`) in a task of its own, and the
    /// [`handshake`](Self::handshake) runs on the other. No listener, no port, no network.
    ///
    /// `uri` gives the path (and the `Host` header); its scheme and authority are otherwise
    /// unused. The request carries no peer address: a handler that extracts axum's
    /// `ConnectInfo` needs axum's `MockConnectInfo` layer on the router under test.
    ///
    /// ```
    /// use axum::{Router, response::Response, routing::any};
    /// use tower_ws::ClientBuilder;
    /// use tower_ws::axum::{WebSocket, WebSocketUpgrade};
    ///
    /// async fn echo(ws: WebSocketUpgrade) -> Response {
    ///     ws.on_upgrade(|mut socket: WebSocket| async move {
    ///         while let Some(Ok(message)) = socket.recv().await {
    ///             if socket.send(message).await.is_err() {
    ///                 return;
    ///             }
    ///         }
    ///     })
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_ws::Error> {
    /// let app = Router::new().route("/echo", any(echo));
    /// let (mut socket, response) = ClientBuilder::new()
    ///     .connect_service("ws://localhost/echo", app)
    ///     .await?;
    /// assert_eq!(response.status(), 101);
    /// socket.send("hello").await?;
    /// assert_eq!(socket.recv().await.unwrap()?.as_text(), Some("hello"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`handshake`](Self::handshake): the route refused the handshake (the error's
    /// source is a [`HandshakeRejected`](crate::HandshakeRejected) with the response), or
    /// answered something that is not a WebSocket handshake.
    pub async fn connect_service<S, B, U>(
        &self,
        uri: U,
        service: S,
    ) -> Result<(WebSocket<DuplexStream>, Response<()>)>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::handshake(
                "connect_service needs a tokio runtime to serve the service in",
            ));
        }
        let (client_end, server_end) = tokio::io::duplex(PIPE_CAPACITY);
        let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut service = service.clone();
            async move {
                poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(request).await
            }
        });
        tokio::spawn(async move {
            let outcome = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server_end), hyper_service)
                .with_upgrades()
                .await;
            if let Err(error) = outcome {
                tracing::debug!(%error, "in-process connection ended with an error");
            }
        });
        self.handshake(uri, client_end).await
    }
}
