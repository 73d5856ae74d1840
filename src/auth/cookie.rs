//! The refresh token as a cookie, for browser clients: `HttpOnly` (no script reads it),
//! `Secure`, `SameSite=Strict` (no other site's page sends it), and named with the
//! `__Host-` prefix, which browsers accept only from this very host, `Secure`, with
//! `Path=/` and no `Domain`: a sibling subdomain cannot plant one (a planted cookie would
//! sign the user into someone else's session). Only `/auth/refresh` and `/auth/logout`
//! read it. Mobile clients keep the token in the body (`refreshSession`).
use std::time::Duration;

pub const NAME: &str = "__Host-cg_refresh";

/// `Set-Cookie` for a new refresh token, kept no longer than the token lives.
pub fn set(token: &str, ttl: Duration) -> String {
    format!(
        "{NAME}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        ttl.as_secs()
    )
}

/// `Set-Cookie` that removes the cookie.
pub const CLEAR: &str = "__Host-cg_refresh=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0";

/// The refresh token among `Cookie` header values. More than one cookie of that name is
/// no token at all.
pub fn read<'a>(cookie_headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut found = cookie_headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == NAME)
        .map(|(_, value)| value);
    match (found.next(), found.next()) {
        (Some(v), None) if !v.is_empty() => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_one_refresh_cookie() {
        assert_eq!(
            read(["a=1; __Host-cg_refresh=tok; b=2"].into_iter()),
            Some("tok")
        );
        assert_eq!(
            read(["a=1", "__Host-cg_refresh=tok"].into_iter()),
            Some("tok")
        );
        assert_eq!(
            read(["__Host-cg_refresh=x; __Host-cg_refresh=y"].into_iter()),
            None
        );
        assert_eq!(read(["__Host-cg_refresh="].into_iter()), None);
        // Without the prefix (which a sibling subdomain could set), it is not ours.
        assert_eq!(read(["cg_refresh=tok"].into_iter()), None);
        assert_eq!(read(std::iter::empty()), None);
    }

    #[test]
    fn the_cookie_is_host_only_http_only_secure_and_strict() {
        let c = set("tok", Duration::from_secs(60));
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/;",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(CLEAR.contains("Max-Age=0"));
    }
}
