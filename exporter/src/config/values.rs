//! Values as people write them in flags and the config file: durations
//! (`10ms`, `1h`) and listen addresses (`:19435`).

use std::{net::SocketAddr, time::Duration};

/// Where `serve` listens: `:PORT` is every address of the host, IPv6 and
/// IPv4 (see `server::listen`), else one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    EveryAddress(u16),
    At(SocketAddr),
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::EveryAddress(port) => write!(f, ":{port}"),
            ListenAddress::At(address) => write!(f, "{address}"),
        }
    }
}

impl serde::Serialize for ListenAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `:19435` (every address), `127.0.0.1:19435`, `[::1]:19435`.
pub fn parse_listen_address(s: &str) -> Result<ListenAddress, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("{s:?}: bad port"))?;
        return Ok(ListenAddress::EveryAddress(port));
    }
    s.parse().map(ListenAddress::At).map_err(|_| format!("{s:?}: expected HOST:PORT or :PORT"))
}

/// `250us`, `10ms`, `1.5s`, `30m`, `1h`, `2d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{s:?}: expected a duration such as 10ms or 1h"))?;
    let seconds = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (ns, us, ms, s, m, h, d)")),
    };
    let total = value * seconds;
    if !total.is_finite() || total > 1e9 {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// The shortest exact form: `10ms`, `1h`, `1500us`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    for (unit, size) in [("h", 3_600_000_000_000u128), ("m", 60_000_000_000), ("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
        if ns >= size && ns.is_multiple_of(size) {
            return format!("{}{unit}", ns / size);
        }
    }
    format!("{ns}ns")
}

/// Serializes a duration as [`format_duration`] writes it.
pub(crate) mod duration_str {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }
}

/// As [`duration_str`], with `None` as `off`.
pub(crate) mod opt_duration_str {
    pub fn serialize<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_str("off"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_addresses() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_millis(10)), "10ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(parse_listen_address(":19435"), Ok(ListenAddress::EveryAddress(19435)));
        assert_eq!(parse_listen_address("127.0.0.1:80"), Ok(ListenAddress::At(SocketAddr::from(([127, 0, 0, 1], 80)))));
        assert_eq!(parse_listen_address("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert_eq!(parse_listen_address(":80").unwrap().to_string(), ":80");
        assert!(parse_listen_address("localhost").is_err());
    }
}
