//! fastwebsockets over hyper 1 with its `upgrade` feature: `examples/echo_server.rs` as
//! published (`FragmentCollector`, `read_frame`, `write_frame` for text and binary, the
//! handler in an `unconstrained` task), without its log lines.

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Kind, Server, accept_each};

pub(crate) const SERVER: Server = Server {
    name: "fastwebsockets",
    kind: Kind::Peer,
    about: "fastwebsockets (upgrade, over hyper 1 http1): its echo_server example, \
            `FragmentCollector::read_frame` then `write_frame` for text and binary",
    run: |listener| Box::pin(accept_each(listener, serve_connection)),
};

async fn serve_connection(stream: TcpStream) {
    let io = TokioIo::new(stream);
    let _ = http1::Builder::new()
        .serve_connection(io, service_fn(server_upgrade))
        .with_upgrades()
        .await;
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => {
                ws.write_frame(frame).await?;
            }
            _ => {}
        }
    }
    Ok(())
}
