//! Failures of the sled store as an operator reads them, in the log, in `/health` and in
//! `imipd compact`'s message: the one place sled's errors become text.

/// A failure as an operator reads it in the log and in replies.
pub(super) trait Explained {
    fn explained(&self) -> String;
}

impl Explained for sled::Error {
    fn explained(&self) -> String {
        match self {
            sled::Error::Io(e) => e.explained(),
            other => other.to_string(),
        }
    }
}

/// sled hands every caller a copy of the I/O error it met, made of its kind and its Debug
/// text (`Os { code: 28, kind: StorageFull, message: "No space left on device" }`); the kind
/// is what survives readably, said here as the system says it.
impl Explained for std::io::Error {
    fn explained(&self) -> String {
        use std::io::ErrorKind::*;
        if self.raw_os_error().is_some() {
            return format!("I/O error: {self}");
        }
        let kind = match self.kind() {
            StorageFull => "No space left on device",
            QuotaExceeded => "Disk quota exceeded",
            PermissionDenied => "Permission denied",
            ReadOnlyFilesystem => "Read-only file system",
            NotFound => "No such file or directory",
            _ => return format!("I/O error: {self}"),
        };
        format!("I/O error: {kind}")
    }
}

/// Failures whose own text is readable.
macro_rules! explained_as_written {
    ($($failure:ty),*) => {$(
        impl Explained for $failure {
            fn explained(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

explained_as_written!(
    String,
    &str,
    std::array::TryFromSliceError,
    getrandom::Error
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_failures_read_as_the_system_says_them_not_as_debug_text() {
        let full = std::io::Error::from_raw_os_error(28);
        // What sled hands each caller after the first: the kind and the Debug text.
        let copied = sled::Error::Io(std::io::Error::new(full.kind(), format!("{full:?}")));
        assert_eq!(copied.explained(), "I/O error: No space left on device");
        assert_eq!(
            sled::Error::Io(full).explained(),
            "I/O error: No space left on device (os error 28)"
        );
        let unknown = std::io::Error::other("the log ended early");
        assert_eq!(
            sled::Error::Io(unknown).explained(),
            "I/O error: the log ended early"
        );
        assert!(!copied.explained().contains("Os {"));
    }
}
