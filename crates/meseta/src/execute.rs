//! `meseta execute` (placeholder until it lands).

use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct ExecuteFlags {
    /// The master, `host:port`.
    #[arg(long, env = "MESETA_MASTER", default_value = "127.0.0.1:5050")]
    pub master: String,
}

pub async fn run(flags: ExecuteFlags) -> anyhow::Result<i32> {
    anyhow::bail!("meseta execute is not built yet (master {})", flags.master)
}
