//! Name resolution for the HTTP clients: `localhost` names are loopback without asking
//! anyone (RFC 6761), so the static binary works in a container with no /etc/hosts;
//! every other name goes to the system's resolver.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The resolver the clients use.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalFirst;

/// Whether a host name is `localhost` or under it.
pub fn is_localhost(name: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    n == "localhost" || n.ends_with(".localhost")
}

impl Resolve for LocalFirst {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            if is_localhost(&host) {
                let addrs: Addrs = Box::new(
                    [
                        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                        SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
                    ]
                    .into_iter(),
                );
                return Ok(addrs);
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn localhost_names_are_recognised() {
        for n in ["localhost", "LOCALHOST.", "plex.localhost"] {
            assert!(super::is_localhost(n), "{n}");
        }
        for n in ["localhost.example", "mylocalhost", "127.0.0.1"] {
            assert!(!super::is_localhost(n), "{n}");
        }
    }
}
