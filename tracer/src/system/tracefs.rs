//! tracefs: making sure it is mounted, and reading tracepoint field offsets from `format` files.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Where tracefs is normally mounted.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Problems with tracefs.
#[derive(Debug, Error)]
pub enum TracefsError {
    /// Not mounted, and mounting failed.
    #[error(
        "tracefs is not mounted at {TRACEFS} and mounting it failed ({0}); run: mount -t tracefs nodev {TRACEFS}"
    )]
    Mount(std::io::Error),
    /// Mounted, but this process may not read it.
    #[error(
        "tracefs at {TRACEFS} is not readable by this process (the directory is mode 0700): \
         CAP_DAC_READ_SEARCH is needed"
    )]
    Unreadable,
    /// A tracepoint this tool needs does not exist on this kernel.
    #[error("tracepoint {0} is not available on this kernel")]
    Missing(String),
    /// A format file lacks a field.
    #[error("tracepoint {tracepoint} has no field `{field}` on this kernel")]
    Field {
        /// `category/name`.
        tracepoint: String,
        /// The missing field.
        field: String,
    },
}

/// Whether tracepoint `category:name` exists on this kernel.
pub fn exists(category: &str, name: &str) -> bool {
    Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .is_dir()
}

/// Where tracefs came from for this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mounted {
    /// It was mounted already.
    Already,
    /// The tracer mounted it in a mount namespace of its own: gone with the tracer, the host
    /// left as it was.
    Private,
    /// The tracer mounted it on the host (a private namespace was refused); it stays.
    Host,
}

/// Makes tracefs readable at [`TRACEFS`]. Call while the process has one thread: a mount
/// namespace of its own cannot be made later.
pub fn ensure_mounted() -> Result<Mounted, TracefsError> {
    match fs::metadata(Path::new(TRACEFS).join("events")) {
        Ok(m) if m.is_dir() => return Ok(Mounted::Already),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(TracefsError::Unreadable);
        }
        _ => {}
    }
    let kind = if private_namespace() {
        Mounted::Private
    } else {
        Mounted::Host
    };
    mount_tracefs().map_err(TracefsError::Mount)?;
    if !Path::new(TRACEFS).join("events").is_dir() {
        return Err(TracefsError::Mount(std::io::Error::other(
            "mounted, but it has no events directory",
        )));
    }
    Ok(kind)
}

/// Moves the tracer into a mount namespace of its own whose mounts do not propagate back.
fn private_namespace() -> bool {
    // SAFETY: unshare and mount with constant, NUL-terminated arguments; they change only
    // this process's view of the mount table.
    unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0
    }
}

fn mount_tracefs() -> std::io::Result<()> {
    // SAFETY: mount(2) with constant, NUL-terminated arguments.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The fields of one tracepoint: name → byte offset.
#[derive(Debug, Default)]
pub struct Format {
    name: String,
    fields: HashMap<String, u32>,
}

impl Format {
    /// Reads `events/<category>/<name>/format`.
    pub fn read(category: &str, name: &str) -> Result<Self, TracefsError> {
        let path: PathBuf = [TRACEFS, "events", category, name, "format"]
            .iter()
            .collect();
        let text = fs::read_to_string(&path)
            .map_err(|_| TracefsError::Missing(format!("{category}:{name}")))?;
        Ok(Self::parse(&format!("{category}:{name}"), &text))
    }

    /// Parses the text of a `format` file.
    pub fn parse(name: &str, text: &str) -> Self {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let mut decl = None;
            let mut offset = None;
            for part in line.trim().split(';') {
                let part = part.trim();
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d);
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.parse::<u32>().ok();
                }
            }
            if let (Some(decl), Some(offset)) = (decl, offset) {
                let last = decl.split_whitespace().last().unwrap_or("");
                let field = last.split('[').next().unwrap_or("").trim_start_matches('*');
                fields.insert(field.to_string(), offset);
            }
        }
        Self {
            name: name.to_string(),
            fields,
        }
    }

    /// The offset of `field`.
    pub fn offset(&self, field: &str) -> Result<u32, TracefsError> {
        self.fields
            .get(field)
            .copied()
            .ok_or_else(|| TracefsError::Field {
                tracepoint: self.name.clone(),
                field: field.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET_STATE: &str = "name: inet_sock_set_state
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;

print fmt: \"family=%s\"";

    #[test]
    fn parses_field_offsets() {
        let f = Format::parse("sock:inet_sock_set_state", SET_STATE);
        assert_eq!(f.offset("common_flags").unwrap(), 2);
        assert_eq!(f.offset("skaddr").unwrap(), 8);
        assert_eq!(f.offset("oldstate").unwrap(), 16);
        assert_eq!(f.offset("saddr_v6").unwrap(), 40);
        let err = f.offset("newstate").unwrap_err().to_string();
        assert_eq!(
            err,
            "tracepoint sock:inet_sock_set_state has no field `newstate` on this kernel"
        );
    }
}
