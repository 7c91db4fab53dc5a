//! Where a fallback fetch may connect. `fhirServer` is chosen by the caller, so an EHR that
//! could name any address could use Stride, with its own token, to reach what only Stride
//! can reach: loopback, the cluster network, a cloud metadata service. Each issuer gets the
//! servers its trust-file entry lists; every address a name resolves to is checked, and the
//! connection goes to a checked address only (the resolver below is the one the client
//! uses, so there is no second lookup to rebind).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// What an address is, for this check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A public unicast address.
    Public,
    /// Loopback, private (RFC 1918, unique local), link-local or shared address space:
    /// allowed only to an issuer whose entry says its FHIR server lives there.
    Internal,
    /// Never a FHIR server: unspecified, broadcast, multicast, reserved, and the cloud
    /// metadata services (their credentials are the prize).
    Never,
}

/// The metadata endpoints of the common clouds (AWS/GCP/Azure/OpenStack, AWS ECS, Alibaba,
/// AWS over IPv6). Refused even to an issuer that may reach internal addresses.
const METADATA: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

pub fn reach(ip: IpAddr) -> Reach {
    // An IPv4 address written as IPv6 (::ffff:a.b.c.d, or NAT64 64:ff9b::a.b.c.d) is judged as
    // the IPv4 address it reaches.
    let ip = match ip {
        IpAddr::V6(v6) => match (v6.to_ipv4_mapped(), v6.segments()) {
            (Some(v4), _) => IpAddr::V4(v4),
            (None, [0x64, 0xff9b, 0, 0, 0, 0, hi, lo]) => {
                IpAddr::V4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
            }
            _ => ip,
        },
        v4 => v4,
    };
    if METADATA.contains(&ip) {
        return Reach::Never;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
            {
                Reach::Never
            } else if v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                // Shared address space (RFC 6598): carrier and cloud-internal networks.
                || (a == 100 && (64..128).contains(&b))
                // Benchmarking (RFC 2544): never a public host.
                || (a == 198 && (b == 18 || b == 19))
            {
                Reach::Internal
            } else {
                Reach::Public
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() || v6.is_multicast() {
                Reach::Never
            } else if v6.is_loopback()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0
            // site-local (deprecated, still routed inside some networks)
            {
                Reach::Internal
            } else {
                Reach::Public
            }
        }
    }
}

/// What one issuer's hooks may name as `fhirServer` (its trust-file entry).
#[derive(Debug, Clone, Copy, Default)]
pub struct FhirPolicy<'a> {
    /// Base URLs a `fhirServer` must equal or lie under; `None`: any server on a public
    /// address (the trust file's default, so existing deployments keep working).
    pub servers: Option<&'a [Url]>,
    /// The issuer's FHIR server is on an internal network (on-premises EHR, loopback in
    /// development): internal addresses are allowed, metadata services still not.
    pub internal: bool,
}

/// Why a fetch was not attempted. Never shown to the caller (one generic 412), only logged
/// and counted, so the answer cannot be used to map a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotListed,
    Address,
}

impl<'a> FhirPolicy<'a> {
    pub fn from_issuer(cfg: &'a stride_auth::IssuerConfig) -> FhirPolicy<'a> {
        FhirPolicy {
            servers: cfg.fhir_servers.as_deref(),
            internal: cfg.fhir_internal_networks,
        }
    }

    /// Checks that need no lookup: the server is listed, and an address written into the
    /// URL (the URL parser has already read decimal, hex and short IPv4 forms) is allowed.
    pub fn admits(&self, server: &Url) -> Result<(), Refusal> {
        if let Some(listed) = self.servers {
            if !listed.iter().any(|base| under(server, base)) {
                return Err(Refusal::NotListed);
            }
        }
        let literal = match server.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        match literal.map(reach) {
            Some(Reach::Never) => Err(Refusal::Address),
            Some(Reach::Internal) if !self.internal => Err(Refusal::Address),
            _ => Ok(()),
        }
    }
}

/// `server` is `base` or a path below it, on the same origin.
fn under(server: &Url, base: &Url) -> bool {
    if server.origin() != base.origin() {
        return false;
    }
    let (s, b) = (
        server.path().trim_end_matches('/'),
        base.path().trim_end_matches('/'),
    );
    s == b || s.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'))
}

/// The error a refused lookup gives the HTTP client; found again in its error chain to
/// count the refusal under its own reason.
#[derive(Debug, thiserror::Error)]
#[error("the FHIR server's name resolves to no allowed address")]
pub struct AddressRefused;

/// A resolver that keeps only the addresses the policy allows; the client connects to those.
pub struct CheckedResolver {
    pub internal: bool,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let internal = self.internal;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| match reach(a.ip()) {
                    Reach::Public => true,
                    Reach::Internal => internal,
                    Reach::Never => false,
                })
                .collect();
            if found.is_empty() {
                return Err(Box::new(AddressRefused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

pub fn resolver(internal: bool) -> Arc<CheckedResolver> {
    Arc::new(CheckedResolver { internal })
}

/// Whether an HTTP client error was a refused lookup.
pub fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<AddressRefused>().is_some() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_judged_by_where_they_reach() {
        for s in ["8.8.8.8", "2a00:1450:4001::200e", "93.184.216.34"] {
            assert_eq!(reach(ip(s)), Reach::Public, "{s}");
        }
        for s in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.1.1",
            "64:ff9b::10.0.0.1",
        ] {
            assert_eq!(reach(ip(s)), Reach::Internal, "{s}");
        }
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::",
            "ff02::1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "100.100.100.200",
        ] {
            assert_eq!(reach(ip(s)), Reach::Never, "{s}");
        }
    }

    #[test]
    fn every_spelling_of_loopback_in_a_url_is_refused() {
        let policy = FhirPolicy::default();
        for s in [
            "http://127.0.0.1/fhir",
            "http://2130706433/fhir",
            "http://0x7f000001/fhir",
            "http://0x7f.1/fhir",
            "http://127.1/fhir",
            "http://0177.0.0.1/fhir",
            "http://[::1]/fhir",
            "http://[::ffff:7f00:1]/fhir",
            "http://169.254.169.254/latest",
        ] {
            let url = Url::parse(s).unwrap();
            assert_eq!(policy.admits(&url), Err(Refusal::Address), "{s}");
        }
        let internal = FhirPolicy {
            internal: true,
            ..Default::default()
        };
        assert!(internal
            .admits(&Url::parse("http://127.1:8080/fhir").unwrap())
            .is_ok());
        assert_eq!(
            internal.admits(&Url::parse("http://169.254.169.254/").unwrap()),
            Err(Refusal::Address),
            "metadata services stay refused"
        );
    }

    #[test]
    fn a_listed_server_admits_its_own_paths_only() {
        let listed = [Url::parse("https://fhir.clinic.example/r4").unwrap()];
        let policy = FhirPolicy {
            servers: Some(&listed),
            internal: false,
        };
        for ok in [
            "https://fhir.clinic.example/r4",
            "https://fhir.clinic.example/r4/",
            "https://fhir.clinic.example/r4/tenant-1",
        ] {
            assert!(policy.admits(&Url::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        for no in [
            "https://fhir.clinic.example/r4x",
            "https://fhir.clinic.example/",
            "https://fhir.clinic.example:8443/r4",
            "http://fhir.clinic.example/r4",
            "https://fhir.clinic.example.evil/r4",
        ] {
            assert_eq!(
                policy.admits(&Url::parse(no).unwrap()),
                Err(Refusal::NotListed),
                "{no}"
            );
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_finds_no_address() {
        let name: Name = "localhost".parse().unwrap();
        let refused = resolver(false).resolve(name).await;
        assert!(refused.is_err_and(|e| is_refused(e.as_ref())));
        let name: Name = "localhost".parse().unwrap();
        let found: Vec<_> = resolver(true).resolve(name).await.unwrap().collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty());
    }
}
