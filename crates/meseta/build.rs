//! Records the facts of this build for `/version` (see `meseta_api::version`): the time
//! (`SOURCE_DATE_EPOCH` when set, else now), the user, and the git commit, branch and
//! exact tag when the source is a git checkout with git installed. Whatever cannot be
//! found is left unset, never an error: a tarball builds too.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let time = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => epoch,
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string(),
    };
    set("MESETA_BUILD_TIME", Some(time));
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .or_else(|| output("id", &["-un"]));
    set("MESETA_BUILD_USER", user);
    let Some(sha) = output("git", &["rev-parse", "--verify", "HEAD"]) else {
        // Run again once the workspace is a checkout (cargo may also have kept this
        // output from a copy of the sources without git sharing the target directory).
        println!("cargo:rerun-if-changed=../../.git");
        return;
    };
    set("MESETA_GIT_SHA", Some(sha));
    let branch = output("git", &["symbolic-ref", "-q", "HEAD"]);
    set(
        "MESETA_GIT_TAG",
        output("git", &["describe", "--exact-match", "--tags", "HEAD"]),
    );
    // Build again when HEAD or the tags move: a commit, a checkout, a new tag, packed refs.
    let mut watched = vec![
        "HEAD".to_string(),
        "packed-refs".to_string(),
        "refs/tags".to_string(),
    ];
    watched.extend(branch.clone());
    for name in watched {
        if let Some(path) = output("git", &["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    set("MESETA_GIT_BRANCH", branch);
}

fn set(name: &str, value: Option<String>) {
    if let Some(value) = value {
        println!("cargo:rustc-env={name}={value}");
    }
}

/// The trimmed standard output of a command that succeeded with some, else `None`.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
