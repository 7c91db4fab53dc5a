//! Open-loop load at a fixed rate: sends the load fixture's patient-view request N times per
//! second whatever the answers, each with its own token, and measures every latency from the
//! moment the request was due (so a stalled server cannot hide its queue: no coordinated
//! omission). Prints one JSON line with the percentiles and the answers by kind: 200, shed
//! (503 `overloaded` with `Retry-After`: the admission's answer to more than the host can take,
//! which a slow host gives more of), any other status, transport errors.
//! `cargo run --release --example rate -- URL FIXTURE_DIR RATE SECONDS`

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// In flight at most; beyond it a request counts as dropped (the server is far behind).
const MAX_IN_FLIGHT: usize = 4096;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, dir, rate, seconds] = args.as_slice() else {
        return Err("usage: rate URL FIXTURE_DIR RATE SECONDS".into());
    };
    let rate: u64 = rate.parse()?;
    let seconds: u64 = seconds.parse()?;
    let dir = std::path::Path::new(dir);
    let body = std::fs::read_to_string(dir.join("request.json"))?;
    // Each call its own hookInstance: a repeated one is a retry, answered from the store.
    let (head, tail) = body
        .split_once(r#""hookInstance":"load""#)
        .ok_or("the request names no hookInstance")?;
    let tokens: Vec<String> = std::fs::read_to_string(dir.join("tokens.txt"))?
        .lines()
        .map(str::to_owned)
        .collect();
    let run = std::process::id();
    let total = (rate * seconds) as usize;
    if tokens.len() < total {
        return Err(format!("{} tokens for {total} requests", tokens.len()).into());
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{url}/cds-services/running-knee-patient-view");
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut dropped = 0usize;
    let start = Instant::now();
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let mut tasks = Vec::with_capacity(total);
    for (i, token) in tokens.into_iter().take(total).enumerate() {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        if in_flight.load(std::sync::atomic::Ordering::Relaxed) >= MAX_IN_FLIGHT {
            dropped += 1;
            continue;
        }
        in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let req = client
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(format!(r#"{head}"hookInstance":"rate-{run}-{i}"{tail}"#));
        let (latencies, outcome, in_flight) =
            (latencies.clone(), outcome.clone(), in_flight.clone());
        tasks.push(tokio::spawn(async move {
            let result = req.send().await;
            let answer = match result {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let retry = res.headers().contains_key("retry-after");
                    let body = res.bytes().await.unwrap_or_default();
                    Some((status, retry && overloaded(&body)))
                }
                Err(_) => None,
            };
            let took = due.elapsed();
            in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            latencies.lock().await.push(took);
            let mut o = outcome.lock().await;
            match answer {
                Some((200, _)) => o.ok += 1,
                Some((503, true)) => o.shed += 1,
                Some(_) => o.other += 1,
                None => o.errors += 1,
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut l = latencies.lock().await.clone();
    l.sort();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    let o = *outcome.lock().await;
    println!(
        "{}",
        serde_json::json!({
            "target_rate": rate, "seconds": seconds, "sent": l.len(), "dropped": dropped,
            "ok": o.ok, "shed": o.shed, "other_status": o.other, "errors": o.errors,
            "achieved_rate": (l.len() as f64 / elapsed).round(),
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
            "max_ms": l.last().map(|d| d.as_secs_f64() * 1000.0),
        })
    );
    Ok(())
}

#[derive(Clone, Copy, Default)]
struct Outcome {
    ok: usize,
    shed: usize,
    other: usize,
    errors: usize,
}

/// The OperationOutcome of a call shed for load (`overloaded`), as the error table writes it.
fn overloaded(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|b| b["issue"][0]["details"]["coding"][0]["code"] == "overloaded")
}
