//! Where one echo's instructions go: the callgrind files of a `count` run, split by whose code
//! ran (tower-ws, tokio and mio, bytes, the standard library, libc, a C++ server's own binary).
//!
//! `callgrind_annotate --inclusive=no` gives every function's own instructions, charged to the
//! source file of each line, so code the compiler inlined from `bytes` into a tower-ws function
//! still counts as `bytes`. The same difference of two runs as the totals (`count.rs`) cancels
//! startup, handshake and shutdown: what is left is the cost of one echo, per owner.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::Failure;

/// Who owns a line of code, from the source file callgrind charged it to (and the object file,
/// for code without debug information).
fn owner(location: &str, object: &str) -> String {
    const REGISTRY: &str = "/registry/src/";
    if let Some(at) = location.find(REGISTRY) {
        // `.../registry/src/<index>/<crate>-<version>/...`
        let rest = &location[at + REGISTRY.len()..];
        let package = rest.split('/').nth(1).unwrap_or(rest);
        let name = package
            .rsplit_once('-')
            .filter(|(_, version)| version.starts_with(|c: char| c.is_ascii_digit()))
            .map_or(package, |(name, _)| name);
        return match name {
            "tokio" | "mio" => "tokio, mio".to_string(),
            other => other.to_string(),
        };
    }
    if location.starts_with("/rustc/") {
        return "std, core".to_string();
    }
    let workspace = crate::workspace_root();
    if let Some(local) = location.strip_prefix(workspace.to_str().unwrap_or("\u{0}")) {
        return if local.starts_with("/benches/") {
            "the bench's server".to_string()
        } else {
            "tower-ws".to_string()
        };
    }
    // No debug information: the object file says whose it is (libc, the dynamic loader, a C++
    // server's own binary).
    let object = Path::new(object)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(object);
    if object.starts_with("libc.so") || location.starts_with("./") {
        "libc".to_string()
    } else if object.starts_with("ld-linux") {
        "dynamic loader".to_string()
    } else if object.starts_with("libstdc++") {
        "libstdc++".to_string()
    } else if object.is_empty() {
        "other".to_string()
    } else {
        object.to_string()
    }
}

/// Every owner's own instructions in one callgrind file.
fn by_owner(file: &Path) -> Result<BTreeMap<String, u64>, Failure> {
    let output = Command::new("callgrind_annotate")
        .args([
            "--inclusive=no",
            "--threshold=100",
            "--show-percs=no",
            "--auto=no",
        ])
        .arg(file)
        .output()
        .map_err(|e| Failure::new(format!("callgrind_annotate: {e}")))?;
    if !output.status.success() {
        return Err(Failure::new(format!(
            "callgrind_annotate {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut owners = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some((count, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let rest = rest.trim();
        // `file:function [object]`; the totals line has no `:`.
        let Some((location, function)) = rest.split_once(':') else {
            continue;
        };
        let object = function
            .rsplit_once(" [")
            .map_or("", |(_, o)| o.trim_end_matches(']'));
        *owners.entry(owner(location, object)).or_insert(0) += count;
    }
    Ok(owners)
}

/// One echo's instructions per owner, from the files of a run with `m1` and one with `m2`
/// messages, largest first (owners under one instruction per echo left out).
pub(crate) fn per_message(
    short: &Path,
    long: &Path,
    m1: u64,
    m2: u64,
) -> Result<Vec<(String, f64)>, Failure> {
    let (a, b) = (by_owner(short)?, by_owner(long)?);
    let n = crate::float(m2 - m1);
    let mut rows: Vec<(String, f64)> = b
        .into_iter()
        .map(|(owner, count)| {
            let before = a.get(&owner).copied().unwrap_or(0);
            (owner, crate::float(count.saturating_sub(before)) / n)
        })
        .filter(|(_, per)| *per >= 1.0)
        .collect();
    rows.sort_by(|x, y| y.1.total_cmp(&x.1));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_the_source_file_or_the_object() {
        let registry = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        assert_eq!(
            owner(
                &format!("{registry}/tokio-1.54.1/src/runtime/park.rs"),
                "/x/echo"
            ),
            "tokio, mio"
        );
        assert_eq!(
            owner(
                &format!("{registry}/bytes-1.12.2/src/bytes_mut.rs"),
                "/x/echo"
            ),
            "bytes"
        );
        assert_eq!(
            owner(&format!("{registry}/hyper-util-0.1.16/src/rt/tokio.rs"), ""),
            "hyper-util"
        );
        assert_eq!(
            owner("/rustc/59807616e1fa/library/core/src/option.rs", "/x/echo"),
            "std, core"
        );
        let root = crate::workspace_root();
        let root = root.display();
        assert_eq!(owner(&format!("{root}/src/proto/read.rs"), ""), "tower-ws");
        assert_eq!(
            owner(&format!("{root}/benches/echo/src/servers/raw.rs"), ""),
            "the bench's server"
        );
        assert_eq!(
            owner("./string/../sysdeps/x86_64/memmove.S", "/usr/lib/libc.so.6"),
            "libc"
        );
        assert_eq!(owner("???", "/work/shared/peers/uws/uws-echo"), "uws-echo");
    }
}
