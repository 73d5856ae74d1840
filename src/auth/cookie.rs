//! The refresh token as a cookie, for browser clients: `HttpOnly` (no script reads it),
//! `Secure`, `SameSite=Strict` (no other site's page sends it) and `Path=/auth` (only the
//! refresh and sign-out endpoints receive it, never `/graphql`). Mobile clients keep the
//! token in the body (`refreshSession`).
use std::time::Duration;

pub const NAME: &str = "cg_refresh";

/// `Set-Cookie` for a new refresh token, kept no longer than the token lives.
pub fn set(token: &str, ttl: Duration) -> String {
    format!(
        "{NAME}={token}; Path=/auth; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        ttl.as_secs()
    )
}

/// `Set-Cookie` that removes the cookie.
pub const CLEAR: &str = "cg_refresh=; Path=/auth; HttpOnly; Secure; SameSite=Strict; Max-Age=0";

/// The refresh token among `Cookie` header values. More than one cookie of that name
/// (another path's, planted by a sibling subdomain) is no token at all.
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
        assert_eq!(read(["a=1; cg_refresh=tok; b=2"].into_iter()), Some("tok"));
        assert_eq!(read(["a=1", "cg_refresh=tok"].into_iter()), Some("tok"));
        assert_eq!(read(["cg_refresh=x; cg_refresh=y"].into_iter()), None);
        assert_eq!(read(["cg_refresh="].into_iter()), None);
        assert_eq!(read(["xcg_refresh=tok"].into_iter()), None);
        assert_eq!(read(std::iter::empty()), None);
    }

    #[test]
    fn the_cookie_is_http_only_secure_strict_and_scoped_to_auth() {
        let c = set("tok", Duration::from_secs(60));
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/auth",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(CLEAR.contains("Max-Age=0"));
    }
}
