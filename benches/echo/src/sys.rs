//! What the harness asks of the operating system beyond std and tokio: pinning a process to a
//! core, raising the open-file limit, and reading a process's CPU time and resident memory from
//! `/proc`.
#![expect(
    unsafe_code,
    reason = "sched_setaffinity, getrlimit/setrlimit, sysconf and kill are only reachable through libc"
)]

use std::io;
use std::time::Duration;

/// Pins the calling thread, and every thread it starts afterwards, to `core`.
///
/// Call it before building the tokio runtime so that the runtime's threads inherit the mask.
pub(crate) fn pin_to_core(core: usize) -> io::Result<()> {
    setaffinity(0, core)
}

/// `sched_setaffinity` of `pid` (0: the calling thread) to the one CPU `core`.
fn setaffinity(pid: libc::pid_t, core: usize) -> io::Result<()> {
    // One bit per CPU: `cpu_set_t` holds 1024 of them.
    if core >= 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "core out of range",
        ));
    }
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is the valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` is below CPU_SETSIZE (checked above), so the bit is inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: the size passed is the size of the set we point to, which lives until the call
    // returns; a bad pid is an error return, not undefined behaviour.
    let rc = unsafe { libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &raw const set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins process `pid` (its main thread, and the threads it starts afterwards) to `core`.
pub(crate) fn pin_process(pid: u32, core: usize) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    setaffinity(pid, core)
}

/// Sends `SIGTERM` to process `pid`.
pub(crate) fn terminate(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill has no memory preconditions; `pid` is a child this process started.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The child processes of process `pid` (of its main thread), from `/proc`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Raises this process's soft limit on open files to its hard limit; returns the new limit.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid `rlimit` for the duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// Clock ticks per second, the unit of `utime` and `stime` in `/proc/PID/stat`.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// CPU time (user + system, all threads) that process `pid` has used so far, from
/// `/proc/PID/stat` (`utime` + `stime`, in clock ticks: 10 ms on Linux).
pub(crate) fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))?;
    let mut fields = after.split_ascii_whitespace();
    // After ')': state is field 3, so utime (14) and stime (15) are the 12th and 13th here.
    let parse = |field: Option<&str>| -> io::Result<u64> {
        field
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
    };
    let utime = parse(fields.nth(11))?;
    let stime = parse(fields.next())?;
    let ticks = utime + stime;
    let per_second = clock_ticks();
    Ok(Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second))
}

/// Resident memory of process `pid`, in bytes, from `VmRSS` in `/proc/PID/status`.
pub(crate) fn resident_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time_and_memory() {
        let pid = std::process::id();
        // Burn a little CPU so the counter is certainly past zero on a slow tick.
        let mut x = 0_u64;
        for i in 0..20_000_000_u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(std::hint::black_box(x), 1);
        assert!(cpu_time(pid).is_ok());
        assert!(resident_bytes(pid).unwrap() > 0);
    }
}
