//! permessage-deflate through the layer: negotiated from the client's offer, echoed compressed,
//! visible to the handler, and declined where the layer is told to.

mod support;

use support::{bounded, inner, serve};
use tower::ServiceBuilder;
use tower_ws::{ClientBuilder, Config, DeflateConfig, Message, Session, UpgradeLayer, handler_fn};

/// Echoes, and answers "compressed" or "plain" first to say what the handshake negotiated.
fn reporting_echo() -> impl tower_ws::Handler + Sync {
    handler_fn(
        |Session {
             mut socket,
             handshake,
             ..
         }| async move {
            let negotiated = handshake.deflate().is_some();
            socket
                .send(Message::text(if negotiated {
                    "compressed"
                } else {
                    "plain"
                }))
                .await?;
            support::echo_until_closed(&mut socket).await
        },
    )
}

async fn server(layer: UpgradeLayer<impl tower_ws::Handler + Sync>) -> std::net::SocketAddr {
    serve(ServiceBuilder::new().layer(layer).service(inner())).await
}

#[tokio::test]
async fn the_layer_negotiates_deflate_and_echoes_compressed() {
    bounded(async {
        let deflate = Config::default().deflate(DeflateConfig::default());
        let addr = server(UpgradeLayer::new(reporting_echo()).config(deflate)).await;
        for client_config in [
            DeflateConfig::default(),
            DeflateConfig::low_memory().server_max_window_bits(10),
        ] {
            let (mut ws, response) = ClientBuilder::new()
                .config(Config::default().deflate(client_config))
                .connect(format!("ws://{addr}/ws"))
                .await
                .unwrap();
            let extensions = response.headers()["sec-websocket-extensions"]
                .to_str()
                .unwrap();
            assert!(extensions.starts_with("permessage-deflate"), "{extensions}");
            assert_eq!(
                ws.recv().await.unwrap().unwrap(),
                Message::text("compressed")
            );
            let json = r#"{"kind":"update","items":[1,2,3],"ok":true}"#.repeat(50);
            for _ in 0..3 {
                ws.send(Message::text(json.clone())).await.unwrap();
                assert_eq!(
                    ws.recv().await.unwrap().unwrap(),
                    Message::text(json.clone())
                );
            }
            ws.send(Message::binary(vec![7_u8; 300_000])).await.unwrap();
            assert_eq!(
                ws.recv().await.unwrap().unwrap(),
                Message::binary(vec![7_u8; 300_000])
            );
            ws.close(tower_ws::CloseCode::NORMAL, "").await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn without_deflate_in_the_layer_the_offer_is_ignored() {
    bounded(async {
        let addr = server(UpgradeLayer::new(reporting_echo())).await;
        let (mut ws, response) = ClientBuilder::new()
            .config(Config::default().deflate(DeflateConfig::default()))
            .connect(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        assert!(response.headers().get("sec-websocket-extensions").is_none());
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("plain"));
    })
    .await;
}

#[tokio::test]
async fn deflate_is_declined_for_requests_the_layer_is_told_to_skip() {
    bounded(async {
        let layer = UpgradeLayer::new(reporting_echo())
            .config(Config::default().deflate(DeflateConfig::default()))
            .decline_deflate_if(|request| {
                request
                    .headers
                    .get("user-agent")
                    .is_some_and(|ua| ua.as_bytes().starts_with(b"BrokenClient/"))
            });
        let addr = server(layer).await;
        let broken = ClientBuilder::new()
            .config(Config::default().deflate(DeflateConfig::default()))
            .header(
                "user-agent".parse().unwrap(),
                "BrokenClient/1.2".parse().unwrap(),
            )
            .unwrap();
        let (mut ws, response) = broken.connect(format!("ws://{addr}/ws")).await.unwrap();
        assert!(response.headers().get("sec-websocket-extensions").is_none());
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("plain"));
        let fine = ClientBuilder::new().config(Config::default().deflate(DeflateConfig::default()));
        let (mut ws, _) = fine.connect(format!("ws://{addr}/ws")).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("compressed")
        );
    })
    .await;
}
