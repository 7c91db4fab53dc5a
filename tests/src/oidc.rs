//! A real OpenID provider for the staff sign-in tests: npm `oidc-provider` (tests/oidc/op.mjs)
//! on loopback, with Stride registered as a confidential client.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::repo_root;

pub const CLIENT_ID: &str = "stride-ui";
pub const CLIENT_SECRET: &str = "browser-test-secret-not-for-production";

pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// Node and the provider's npm packages are installed (scripts/test does it).
pub fn provider_ready() -> bool {
    on_path("node")
        && repo_root()
            .join("tests/oidc/node_modules/oidc-provider")
            .is_dir()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The OpenID provider, stopped when dropped.
pub struct Provider {
    _child: Child,
    pub issuer: String,
    pub jwks_uri: String,
}

pub async fn start_provider(redirect_uri: &str) -> Provider {
    start_provider_with(redirect_uri, &[]).await
}

/// The provider with more of its settings (`SMART_REDIRECT_URI` makes it a mock EHR's SMART
/// authorization server as well; see tests/oidc/op.mjs).
pub async fn start_provider_with(redirect_uri: &str, env: &[(&str, &str)]) -> Provider {
    let mut child = Command::new("node")
        .arg(repo_root().join("tests/oidc/op.mjs"))
        .envs(env.iter().copied())
        .env("REDIRECT_URI", redirect_uri)
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the provider starts within 30 s")
        .unwrap()
        .expect("the provider prints its issuer");
    let v: Json = serde_json::from_str(&first).unwrap();
    Provider {
        _child: child,
        issuer: v["issuer"].as_str().unwrap().to_owned(),
        jwks_uri: v["jwks_uri"].as_str().unwrap().to_owned(),
    }
}
