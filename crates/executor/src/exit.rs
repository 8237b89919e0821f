//! How a task's end is worded, exactly as Mesos words it (`Command exited with status 3`,
//! `Command terminated with signal Killed`), and how a tool reads an exit code back.

use std::ffi::CStr;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The message of a task's terminal update: `"Command " + WSTRINGIFY(status)`.
pub fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("Command exited with status {code}");
    }
    if let Some(signal) = status.signal() {
        let core = if status.core_dumped() {
            " (core dumped)"
        } else {
            ""
        };
        return format!(
            "Command terminated with signal {}{core}",
            signal_description(signal)
        );
    }
    format!("Command wait status {}", status.into_raw())
}

/// The C library's description of a signal (`strsignal`: "Terminated", "Killed").
pub fn signal_description(signal: i32) -> String {
    // SAFETY: strsignal returns a pointer to a NUL-terminated string owned by the C
    // library (static, or thread-local for unknown numbers); we copy it out at once.
    let text = unsafe { libc::strsignal(signal) };
    if text.is_null() {
        return format!("Unknown signal {signal}");
    }
    // SAFETY: non-null and NUL-terminated, as above.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// The shell-style exit code a terminal update's message describes: `N` for "exited with
/// status N", `128 + signal` for "terminated with signal NAME"; `None` otherwise.
pub fn exit_code_from_message(message: &str) -> Option<i32> {
    if let Some(rest) = message.split("exited with status ").nth(1) {
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        return digits.parse().ok();
    }
    let rest = message.split("terminated with signal ").nth(1)?;
    let name = rest.trim_end_matches(" (core dumped)");
    (1..65)
        .find(|&n| signal_description(n) == name)
        .map(|n| 128 + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_exits_like_mesos() {
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            "Command exited with status 3"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(0)),
            "Command exited with status 0"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(libc::SIGKILL)),
            "Command terminated with signal Killed"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(libc::SIGTERM)),
            "Command terminated with signal Terminated"
        );
    }

    #[test]
    fn reads_exit_codes_back() {
        assert_eq!(
            exit_code_from_message("Command exited with status 42"),
            Some(42)
        );
        assert_eq!(
            exit_code_from_message("Command terminated with signal Killed"),
            Some(128 + libc::SIGKILL)
        );
        assert_eq!(
            exit_code_from_message(
                "Command terminated with signal Segmentation fault (core dumped)"
            ),
            Some(128 + libc::SIGSEGV)
        );
        assert_eq!(exit_code_from_message("Executor terminated"), None);
    }
}
