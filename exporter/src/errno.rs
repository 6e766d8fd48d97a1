//! errno names and meanings, for every errno the kernel defines.

use std::sync::OnceLock;

use nix::errno::Errno;

const TABLE_SIZE: usize = 256;

fn table() -> &'static [(String, &'static str); TABLE_SIZE] {
    static TABLE: OnceLock<Box<[(String, &'static str); TABLE_SIZE]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Box::new(std::array::from_fn(|n| {
            let errno = Errno::from_raw(n as i32);
            if errno == Errno::UnknownErrno {
                (format!("E{n}"), "Unknown error")
            } else {
                (format!("{errno:?}"), errno.desc())
            }
        }))
    })
}

/// `ENOENT` for 2; `E<n>` for numbers the kernel does not define.
pub fn name(errno: i32) -> &'static str {
    match usize::try_from(errno) {
        Ok(n) if n < TABLE_SIZE && n > 0 => &table()[n].0,
        _ => "EUNKNOWN",
    }
}

/// `No such file or directory` for 2.
pub fn meaning(errno: i32) -> &'static str {
    match usize::try_from(errno) {
        Ok(n) if n < TABLE_SIZE && n > 0 => table()[n].1,
        _ => "Unknown error",
    }
}

/// Every errno the kernel defines, in numeric order.
pub fn all() -> impl Iterator<Item = (i32, &'static str)> {
    (1..TABLE_SIZE as i32).filter(|&n| Errno::from_raw(n) != Errno::UnknownErrno).map(|n| (n, name(n)))
}

/// The errno number for a name such as `ENOENT`.
pub fn from_name(wanted: &str) -> Option<i32> {
    all().find(|&(_, n)| n.eq_ignore_ascii_case(wanted)).map(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_errno_open_returns() {
        assert_eq!(name(libc::ENOENT), "ENOENT");
        assert_eq!(name(libc::EACCES), "EACCES");
        assert_eq!(name(libc::EMFILE), "EMFILE");
        assert_eq!(name(libc::ENAMETOOLONG), "ENAMETOOLONG");
        assert_eq!(name(libc::EHWPOISON), "EHWPOISON");
        assert_eq!(meaning(libc::ENOENT), "No such file or directory");
        assert_eq!(name(200), "E200");
        assert_eq!(name(0), "EUNKNOWN");
        assert_eq!(from_name("eloop"), Some(libc::ELOOP));
        assert!(all().count() > 130, "the kernel defines over 130 errnos");
    }
}
