//! Where a webhook may be sent (SSRF rules): `http` or `https` URLs only, and
//! never to a private, loopback, link-local, unspecified, multicast or
//! otherwise non-public address — unless the operator allows private targets
//! (`webhooks.allow_private_targets`, for tests and the demo).
//!
//! A URL is checked when it is saved ([`WebhookUrl::parse`]: a literal address
//! in any notation the WHATWG parser accepts — `127.1`, `0x7f.0.0.1`,
//! `2130706433`, `[::ffff:127.0.0.1]` — is refused), and every address a name
//! resolves to is checked again before each delivery connects
//! ([`is_public`]; the dispatcher connects only to an address it checked).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A checked webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

/// Why a URL is refused (`422 invalid_webhook_url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadUrl(pub String);

impl WebhookUrl {
    /// Parses and checks `raw`; `allow_private` lifts the address rule only.
    pub fn parse(raw: &str, allow_private: bool) -> Result<Self, BadUrl> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_URL_LEN {
            return Err(BadUrl(format!("must be an http(s) URL of 1 to {MAX_URL_LEN} characters")));
        }
        let url = Url::parse(raw).map_err(|e| BadUrl(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BadUrl(format!("the scheme must be http or https, not {}", url.scheme())));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BadUrl("credentials in the URL are not accepted".into()));
        }
        if url.fragment().is_some() {
            return Err(BadUrl("a fragment is not sent; remove it".into()));
        }
        let literal = match url.host() {
            None => return Err(BadUrl("the URL has no host".into())),
            Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            Some(Host::Domain(name)) => {
                if !allow_private && is_local_name(name) {
                    return Err(BadUrl(format!("{name} names this machine or a local network")));
                }
                None
            }
        };
        if let Some(ip) = literal
            && !allow_private
            && !is_public(ip)
        {
            return Err(BadUrl(format!("{ip} is a private, loopback, link-local or otherwise non-public address")));
        }
        Ok(Self(url))
    }

    /// A URL already stored (checked when it was saved; addresses are
    /// checked again at delivery).
    pub fn stored(raw: &str) -> Result<Self, BadUrl> {
        Url::parse(raw).map(Self).map_err(|e| BadUrl(format!("stored URL {raw}: {e}")))
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// Names that always mean this machine or its local network.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local") || name.ends_with(".internal")
}

/// Whether `ip` is a globally routable unicast address a webhook may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || a >= 240 // reserved
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b))) // benchmarking
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // IPv4 in IPv6 (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::/96): judge the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_unspecified() && !ip.is_loopback() {
        return is_public_v4(Ipv4Addr::new(
            (segments[6] >> 8) as u8,
            segments[6] as u8,
            (segments[7] >> 8) as u8,
            segments[7] as u8,
        ));
    }
    if segments[0] == 0x64 && segments[1] == 0xff9b {
        return is_public_v4(Ipv4Addr::new(
            (segments[6] >> 8) as u8,
            segments[6] as u8,
            (segments[7] >> 8) as u8,
            segments[7] as u8,
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[0] == 0x0100 && segments[1..4] == [0, 0, 0]) // discard-only 100::/64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> bool {
        WebhookUrl::parse(raw, false).is_err()
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        assert!(!refused("https://hooks.example.com/gavel"));
        assert!(!refused("http://93.184.216.34:8080/x?y=1"));
        for bad in ["ftp://example.com/", "file:///etc/passwd", "gopher://x", "javascript:alert(1)", "example.com", ""]
        {
            assert!(refused(bad), "{bad}");
        }
        assert!(refused("https://user:pw@example.com/"));
    }

    #[test]
    fn private_loopback_and_link_local_literals_are_refused_in_every_notation() {
        for bad in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://0.0.0.0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[ff02::1]/",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            assert!(refused(bad), "{bad} should be refused");
        }
    }

    #[test]
    fn the_operator_setting_allows_private_targets() {
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/hook", true).is_ok());
        assert!(WebhookUrl::parse("ftp://127.0.0.1/", true).is_err(), "the scheme rule stays");
    }

    #[test]
    fn public_addresses_pass_the_delivery_check() {
        for ok in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34"] {
            assert!(is_public(ok.parse().expect("an address")), "{ok}");
        }
        for bad in ["127.0.0.1", "10.0.0.1", "::1", "fe80::1", "::ffff:10.0.0.1", "0.1.2.3"] {
            assert!(!is_public(bad.parse().expect("an address")), "{bad}");
        }
    }
}
