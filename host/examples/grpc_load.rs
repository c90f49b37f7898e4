//! A small gRPC load generator for `feast.serving.ServingService/GetOnlineFeatures`:
//! CONNS concurrent clients (one HTTP/2 connection each) send the request equivalent
//! to a benchmark payload for SECONDS. Prints `requests=... rps=... p50_us=... p99_us=...`.
//!
//! ```text
//! cargo run --release --example grpc_load -- 127.0.0.1:6566 bench/payloads/p1_1x3.json 8 10
//! ```

#![allow(
    clippy::expect_used,
    reason = "test and benchmark support: a failed step ends the run"
)]

use std::time::{Duration, Instant};

use feast_server::parse_request;
use feast_server::proto::feast::serving::GetOnlineFeaturesRequest;
use feast_server::proto::feast::serving::serving_service_client::ServingServiceClient;
use feast_server::to_proto_request;

fn request(payload: &std::path::Path) -> GetOnlineFeaturesRequest {
    let body = std::fs::read(payload).expect("payload");
    to_proto_request(parse_request(&body).expect("payload is a Feast request"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: grpc_load HOST:PORT PAYLOAD CONNS SECONDS");
        std::process::exit(2);
    }
    let req = request(std::path::Path::new(&args[2]));
    let conns: usize = args[3].parse().expect("conns");
    let secs: u64 = args[4].parse().expect("seconds");
    let url = format!("http://{}", args[1]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let mut client = ServingServiceClient::connect(url.clone())
                .await
                .expect("connect");
            let req = req.clone();
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match client.get_online_features(req.clone()).await {
                        Ok(_) => lat.push(t0.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let (mut all, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await.expect("task");
            all.extend(l);
            errors += e;
        }
        all.sort();
        let elapsed = start.elapsed();
        let pct = |p: f64| {
            all.get(((all.len() as f64 - 1.0) * p) as usize)
                .map_or(0, |d| d.as_micros())
        };
        println!(
            "requests={} errors={errors} rps={:.1} p50_us={} p99_us={}",
            all.len(),
            all.len() as f64 / elapsed.as_secs_f64(),
            pct(0.5),
            pct(0.99)
        );
    });
}
