//! The ceiling for the load test: a bare actix-web server that parses the same JSON body and
//! answers it back, with no auth, no evaluation and no database. One worker unless told
//! otherwise: issue 32 sets the hot path's goal against a one-worker echo.
//! `cargo run --release --example echo -- 127.0.0.1:8099 [WORKERS]`

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let workers = match std::env::args().nth(2) {
        Some(n) => n
            .parse()
            .ok()
            .filter(|&n: &usize| n >= 1)
            .expect("WORKERS: a whole number, at least 1"),
        None => 1,
    };
    HttpServer::new(|| {
        App::new()
            .app_data(web::JsonConfig::default().limit(8 * 1024 * 1024))
            .default_service(web::to(|body: web::Json<serde_json::Value>| async move {
                HttpResponse::Ok().json(
                    serde_json::json!({ "cards": [], "echo": body.into_inner()["hookInstance"] }),
                )
            }))
    })
    .workers(workers)
    .bind(addr)?
    .run()
    .await
}
