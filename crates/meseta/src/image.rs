//! `meseta image`: the agent's image store from the command line (import, pull, list,
//! rm, unpack, prune), and the registry flags that `agent` and `local` share with it.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use meseta_containerizer::image::auth::Credentials;
use meseta_containerizer::image::{
    archive, gc, provision, ImageRecord, ImageService, ImageStore, RegistryConfig,
};
use std::path::PathBuf;

/// Where images come from (`--docker-registry`, `--docker-config`,
/// `--docker-insecure-registries`).
#[derive(Args, Clone, Debug)]
pub struct RegistryFlags {
    /// The registry of image names that name none: `host[:port]` or a URL (`http://` makes
    /// it insecure). Docker Hub by default.
    #[arg(
        long = "docker-registry",
        alias = "docker_registry",
        env = "MESETA_DOCKER_REGISTRY",
        default_value = "docker.io"
    )]
    pub docker_registry: String,
    /// A docker `config.json` whose `auths` hold registry logins.
    #[arg(
        long = "docker-config",
        alias = "docker_config",
        env = "MESETA_DOCKER_CONFIG"
    )]
    pub docker_config: Option<PathBuf>,
    /// Registries (`host:port,...`) spoken to over plain http.
    #[arg(
        long = "docker-insecure-registries",
        alias = "docker_insecure_registries",
        env = "MESETA_DOCKER_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub docker_insecure_registries: Vec<String>,
}

impl RegistryFlags {
    pub fn config(&self) -> Result<RegistryConfig> {
        let mut config = RegistryConfig {
            insecure: self.docker_insecure_registries.clone(),
            ..RegistryConfig::default()
        };
        config.set_default_registry(&self.docker_registry);
        if let Some(path) = &self.docker_config {
            config.credentials = Credentials::from_docker_config(path)?;
        }
        Ok(config)
    }
}

#[derive(Args, Clone, Debug)]
pub struct StoreFlags {
    /// The agent's work directory (images live in `images/` below it).
    #[arg(long = "work-dir", alias = "work_dir", env = "MESETA_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

impl StoreFlags {
    fn store(&self) -> Result<ImageStore> {
        let work_dir = self
            .work_dir
            .clone()
            .unwrap_or_else(|| crate::flags::default_work_dir().join("agent"));
        Ok(ImageStore::open(work_dir.join("images"))?)
    }

    fn service(&self) -> Result<ImageService> {
        Ok(ImageService::new(
            self.store()?,
            self.registry.config()?,
            Some(provision::Backend::Copy),
        ))
    }
}

#[derive(Subcommand, Clone, Debug)]
pub enum ImageCommand {
    /// Import a `docker save` / docker-archive tarball or an OCI layout (directory or tar).
    Import {
        file: PathBuf,
        /// The image's name, for archives that name none (or to rename it).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Pull an image from its registry.
    Pull {
        name: String,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// List the stored images.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Remove an image's name, and the content no other image or container uses.
    Rm {
        name: String,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Write an image's root filesystem (its layers applied) into an empty directory.
    Unpack {
        name: String,
        dir: PathBuf,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// Remove every image no container uses, except those given with `--exclude`.
    Prune {
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
        #[command(flatten)]
        store: StoreFlags,
    },
}

pub async fn run(command: ImageCommand) -> Result<i32> {
    match command {
        ImageCommand::Import { file, name, store } => {
            let default_registry = store.registry.config()?.default_registry;
            let store = store.store()?;
            let records = tokio::task::spawn_blocking(move || {
                archive::import(&store, &file, name.as_deref(), &default_registry)
                    .with_context(|| format!("importing {}", file.display()))
            })
            .await??;
            for record in records {
                println!("imported {} {}", record.name, record.manifest);
            }
        }
        ImageCommand::Pull { name, store } => {
            let record = store.service()?.pull(&name).await?;
            println!("pulled {} {}", record.name, record.manifest);
        }
        ImageCommand::List { json, store } => {
            let records = store.store()?.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                print_table(&records);
            }
        }
        ImageCommand::Rm { name, store } => {
            let service = store.service()?;
            let name = service.reference(&name)?.to_string();
            let store = service.store().clone();
            let (_, removed) =
                tokio::task::spawn_blocking(move || gc::remove(&store, &name)).await??;
            println!("removed (and {removed} files no image uses)");
        }
        ImageCommand::Unpack { name, dir, store } => {
            let service = store.service()?;
            let record = service.image(&name).await?;
            let store = service.store().clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                if std::fs::read_dir(&dir)?.next().is_some() {
                    anyhow::bail!("{} is not empty", dir.display());
                }
                Ok(provision::unpack(&store, &record, &dir)?)
            })
            .await??;
        }
        ImageCommand::Prune { exclude, store } => {
            let pruned = store.service()?.prune(&exclude).await?;
            for name in &pruned.images {
                println!("removed {name}");
            }
            println!("{} files removed", pruned.files);
        }
    }
    Ok(0)
}

fn print_table(records: &[ImageRecord]) {
    println!(
        "{:<50} {:<20} {:>6} {:>12}",
        "NAME", "MANIFEST", "LAYERS", "SIZE"
    );
    for r in records {
        let manifest = r.manifest.to_string();
        println!(
            "{:<50} {:<20} {:>6} {:>12}",
            r.name,
            &manifest[..manifest.len().min(19)],
            r.layers.len(),
            r.size
        );
    }
}
