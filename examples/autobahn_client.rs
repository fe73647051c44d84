//! The Autobahn|Testsuite client loop: the client under test for `wstest -m fuzzingserver`.
//!
//! ```sh
//! cargo run --release --features client,deflate --example autobahn_client -- [URL] [AGENT]
//! ```
//!
//! URL defaults to `ws://127.0.0.1:9001` and AGENT to `tower-ws`. The loop asks the fuzzing
//! server for the number of cases (`/getCaseCount`), runs each one (`/runCase?case=N&agent=A`),
//! echoing every text and binary message until the server closes, and finally asks the server
//! to write its reports (`/updateReports?agent=A`). `autobahn/run-client.sh` runs it.
//!
//! The default [`Config`] already takes the suite's largest messages (16 MiB in cases 9.*).
//! permessage-deflate is offered with the default settings (`client_max_window_bits` without a
//! value, so the server may limit our window, as cases 13.3 to 13.6 do) and a threshold of 0,
//! so that every message the client echoes is compressed.
//! Protocol errors the fuzzer provokes end a case (the engine fails the connection with the
//! right close code); they are expected and only logged. The exit status is non-zero when the
//! server cannot be reached for the case count or the report, or when a case's connection
//! could not be opened at all.

use std::error::Error;
use std::time::Instant;

use tower_ws::{ClientBuilder, Config, DeflateConfig, Message};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let url = url.trim_end_matches('/').to_owned();
    let agent = args.next().unwrap_or_else(|| "tower-ws".to_owned());
    let agent_q = percent_encode(&agent);
    let client = ClientBuilder::new()
        .config(Config::default().deflate(DeflateConfig::default().threshold(0)));

    let count = case_count(&client, &url).await?;
    eprintln!("autobahn_client: {count} cases, agent {agent:?}");
    let started = Instant::now();
    let mut unreachable = 0_u32;
    for case in 1..=count {
        let case_url = format!("{url}/runCase?case={case}&agent={agent_q}");
        match client.connect(case_url.as_str()).await {
            Ok((mut ws, _)) => {
                while let Some(received) = ws.recv().await {
                    match received {
                        Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                            if ws.send(message).await.is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        // The stream ends right after an error: the loop sees `None` next.
                        Err(e) => eprintln!("autobahn_client: case {case}: {e}"),
                    }
                }
            }
            Err(e) => {
                unreachable += 1;
                eprintln!("autobahn_client: case {case}: could not connect: {e}");
            }
        }
        if case % 50 == 0 {
            eprintln!(
                "autobahn_client: {case}/{count} cases in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "autobahn_client: ran {count} cases in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let (mut ws, _) = client
        .connect(format!("{url}/updateReports?agent={agent_q}").as_str())
        .await?;
    while let Some(received) = ws.recv().await {
        received?;
    }
    if unreachable > 0 {
        return Err(format!("{unreachable} cases could not connect").into());
    }
    Ok(())
}

/// Asks the fuzzing server how many cases it has.
async fn case_count(client: &ClientBuilder, url: &str) -> Result<u32, Box<dyn Error>> {
    let (mut ws, _) = client
        .connect(format!("{url}/getCaseCount").as_str())
        .await?;
    let mut count = None;
    while let Some(received) = ws.recv().await {
        if let Message::Text(text) = received? {
            count = Some(text.trim().parse()?);
        }
    }
    count.ok_or_else(|| "the server sent no case count".into())
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query value.
fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    s.bytes()
        .fold(String::with_capacity(s.len()), |mut out, b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
            out
        })
}
