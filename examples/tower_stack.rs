//! The layer in a `ServiceBuilder` stack: tower-http's `TraceLayer`, a timeout, a concurrency
//! limit and an authentication middleware whose request extension the handler reads.
//!
//! ```sh
//! cargo run --example tower_stack            # 127.0.0.1:3000
//! # then, with any WebSocket client:
//! #   ws://127.0.0.1:3000/ws?token=alice-token   (or an `Authorization: Bearer alice-token` header)
//! ```
//!
//! What HTTP middleware sees is the handshake request: the timeout and the concurrency limit
//! bound the handshake, not the session, which runs in a task of its own once the `101` is
//! sent. To cap the number of sessions, limit the handler: it is a tower service too.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_ws::{Session, UpgradeLayer, handler_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Who the auth middleware says is calling.
#[derive(Clone, Debug)]
struct User(&'static str);

/// Authenticates with `Authorization: Bearer <token>` or, for browsers (which cannot set
/// headers on a WebSocket handshake), `?token=<token>`; puts the [`User`] in the request.
#[expect(
    clippy::result_large_err,
    reason = "tower-http's `ValidateRequest` takes the rejection response by value"
)]
fn authenticate(request: &mut Request<Incoming>) -> Result<(), Response<Body>> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("token="));
    let user = match bearer.or(query) {
        Some("alice-token") => User("alice"),
        Some("bob-token") => User("bob"),
        _ => {
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"unauthorized\n")).boxed_unsync());
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            return Err(response);
        }
    };
    request.extensions_mut().insert(user);
    Ok(())
}

/// Greets the user the auth middleware found, then echoes with their name.
async fn greet(
    Session {
        mut socket,
        handshake,
        ..
    }: Session,
) -> Result<(), tower_ws::Error> {
    let User(name) = handshake
        .extensions()
        .get::<User>()
        .cloned()
        .unwrap_or(User("stranger"));
    socket.send(format!("hello {name}")).await?;
    while let Some(message) = socket.recv().await {
        if let Some(text) = message?.as_text() {
            socket.send(format!("{name}: {text}")).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,tower_http=debug,tower_ws=debug")
            }),
        )
        .init();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned())
        .parse()?;

    // At most 1,000 sessions at once: the 1,001st waits for a free place.
    let handler = ServiceBuilder::new()
        .concurrency_limit(1_000)
        .service(handler_fn(greet));

    // Outermost first: trace, time out, limit, authenticate, then the WebSocket layer in front
    // of the application.
    let service = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .concurrency_limit(256)
        .layer(ValidateRequestHeaderLayer::custom(authenticate))
        .map_response(|response: Response<_>| response.map(BodyExt::boxed_unsync))
        .layer(UpgradeLayer::new(handler))
        .service_fn(|request: Request<Incoming>| async move {
            let name = request.extensions().get::<User>().map_or("?", |u| u.0);
            let body = format!("hello {name}: connect a WebSocket to this URL\n");
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        });

    let listener = TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{addr}; try ws://{addr}/ws?token=alice-token");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder.http2().enable_connect_protocol();
    loop {
        let (stream, _) = listener.accept().await?;
        // Nagle's algorithm would hold back the tail of each message for the peer's delayed
        // ACK (about 40 ms): over HTTP/2, hyper writes each frame separately.
        let _ = stream.set_nodelay(true);
        // Slow clients: `header_read_timeout` above, and a deadline for the first request,
        // which covers what that timeout does not (see `first_request_within`).
        let requested = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&requested);
        let service = service
            .clone()
            .map_request(move |request: Request<Incoming>| {
                seen.store(true, Ordering::Relaxed);
                request
            });
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            match first_request_within(Duration::from_secs(10), &requested, connection).await {
                Some(Err(error)) => tracing::debug!(%error, "connection ended with an error"),
                None => tracing::debug!("no request in time: connection dropped"),
                Some(Ok(())) => {}
            }
        });
    }
}

/// Runs `connection`, unless no request has arrived on it (`requested` is still false) after
/// `deadline`: then drops it and returns `None`.
///
/// hyper-util's auto builder reads the first bytes to tell HTTP/1 from HTTP/2 before hyper's
/// `header_read_timeout` starts (hyperium/hyper#3756): without a deadline of its own, a client
/// that connects and sends nothing, or sends the HTTP/2 preface slowly, holds its connection
/// forever.
async fn first_request_within<F: Future>(
    deadline: Duration,
    requested: &AtomicBool,
    connection: F,
) -> Option<F::Output> {
    let mut connection = pin!(connection);
    tokio::select! {
        output = connection.as_mut() => Some(output),
        () = tokio::time::sleep(deadline) => {
            if requested.load(Ordering::Relaxed) {
                Some(connection.await)
            } else {
                None
            }
        }
    }
}
