//! The `huimin` command line: `serve` (default), `migrate`, `token`, `fixtures generate`,
//! `residents relink`, `audit verify`, `keys list|rotate|reencrypt|retire`, `stats population|rebuild`.

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::auth::{self, Role, TokenRequest};
use crate::config::Settings;
use crate::startup::Application;
use crate::{store, telemetry};

#[derive(Parser)]
#[command(
    name = "huimin",
    version,
    about = "Huimin (惠民) regional health information exchange"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the FHIR server (the default).
    Serve,
    /// Apply pending database migrations (or revert the latest with --revert).
    Migrate {
        #[arg(long)]
        revert: bool,
    },
    /// Print a development token signed with the dev secret (auth_mode = dev only).
    Token {
        /// his, doctor, resident, official or admin.
        #[arg(long)]
        role: Role,
        /// SMART scopes, space separated.
        #[arg(long, default_value = "system/*.cruds")]
        scope: String,
        /// The caller's institution, e.g. Organization/1.
        #[arg(long)]
        org: Option<String>,
        /// The FHIR resource of the user, e.g. Practitioner/123.
        #[arg(long = "fhir-user")]
        fhir_user: Option<String>,
        /// An official's area: a GB/T 2260 code, e.g. 510104 (a district) or 510100 (the city).
        #[arg(long)]
        area: Option<String>,
        /// Subject (defaults to the role).
        #[arg(long)]
        sub: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Synthetic test data.
    Fixtures {
        #[command(subcommand)]
        action: FixturesAction,
    },
    /// The resident index.
    Residents {
        #[command(subcommand)]
        action: ResidentsAction,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// The keys that protect ID, health card and phone numbers at rest (SM4, HMAC-SM3).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Public-health statistics.
    Stats {
        #[command(subcommand)]
        action: StatsAction,
    },
}

#[derive(Subcommand)]
enum StatsAction {
    /// Load the resident populations the indicators divide by, from a CSV file with the
    /// header `area,year,sex,age_from,age_to,population` (area: a GB/T 2260 code or a
    /// township's nine digits; sex: male or female; ages in whole years, inclusive). The rows
    /// of each (area, year) in the file replace those loaded before; running servers use
    /// them from their next evaluation.
    Population {
        /// The CSV file.
        file: std::path::PathBuf,
    },
    /// Write what the indicators count again from the stored record (for records stored
    /// before the statistics existed). The statistics are partial while it runs.
    Rebuild,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Show the keyring's keys (ids and dates, never the keys), the active one last.
    List,
    /// Add a new key and make it the active one (creating the keyring when there is none).
    /// Then restart the servers so they use it, and run `keys reencrypt`.
    Rotate,
    /// Seal what is stored under older keys (or in the clear) again under the active key and
    /// rebuild its blind index. Safe to run while servers run, and to run again.
    Reencrypt,
    /// Remove a key from the keyring once nothing stored uses it any more.
    Retire {
        /// The key id (from `keys list`).
        id: String,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the SM3 hash chain of the audit trail: name every record that was modified,
    /// moved or deleted. Exits with status 1 when anything is wrong.
    Verify {
        /// A head printed earlier (POSITION:HASH, from this command or the server log's
        /// "audit chain sealed"): it must still be in the chain, so that deleting the newest
        /// records is detected too.
        #[arg(long)]
        expect: Option<String>,
        /// Seal committed records first (what the running server does every second), waiting
        /// up to 30 s for records held back by a database transaction still running.
        #[arg(long)]
        seal: bool,
    },
}

#[derive(Subcommand)]
enum ResidentsAction {
    /// Link data stored before the resident index existed: institution Patients to golden
    /// residents, and clinical resources to their residents. Safe to run again.
    Relink,
}

#[derive(Subcommand)]
enum FixturesAction {
    /// Write a deterministic synthetic city: registry.json (institutions, practitioners) and
    /// each institution's transaction bundles under <out>/<institution>/.
    Generate {
        /// How many residents.
        #[arg(long, default_value_t = 1000)]
        residents: usize,
        /// The same seed gives the same city, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (created).
        #[arg(long)]
        out: std::path::PathBuf,
        /// The first day of the published Slots (YYYY-MM-DD; the five weekdays from it on):
        /// a date ahead of today gives Slots one can book.
        #[arg(long, default_value = crate::fixtures::SLOTS_FROM)]
        slots_from: String,
    },
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    telemetry::init(settings.log_format, &settings.log_level);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let sys = actix_web::rt::System::new();
            sys.block_on(async move {
                let app = Application::build(settings)?;
                app.run_until_stopped().await?;
                Ok(())
            })
        }
        Command::Migrate { revert } => {
            let db = settings.database()?;
            if revert {
                let v = store::revert_last(&db)?;
                println!("reverted {v}");
            } else {
                let applied = store::migrate(&db)?;
                println!(
                    "{} migration(s) applied on {}",
                    applied.len(),
                    db.backend_name()
                );
            }
            Ok(())
        }
        Command::Token {
            role,
            scope,
            org,
            fhir_user,
            area,
            sub,
            ttl,
        } => {
            if role == auth::Role::Official && !auth::is_area(area.as_deref()) {
                anyhow::bail!(
                    "an official token answers for one area: pass --area <GB/T 2260 code>, e.g. 510104"
                );
            }
            if matches!(role, auth::Role::His | auth::Role::Doctor)
                && !auth::is_institution(org.as_deref())
            {
                anyhow::bail!(
                    "a his or doctor token acts for one institution: pass --org Organization/<id>"
                );
            }
            let sub = sub.unwrap_or_else(|| format!("{role:?}").to_lowercase());
            let token = auth::dev_token(
                &settings,
                &TokenRequest {
                    sub,
                    role,
                    scope,
                    org,
                    fhir_user,
                    area,
                    ttl_secs: ttl,
                },
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Stats {
            action: StatsAction::Population { file },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let rows = crate::services::stats::population::parse_csv(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let store = open_store(&settings, settings.db_pool_size)?;
            let n = crate::services::stats::population::load(&store, rows)
                .map_err(|e| anyhow::anyhow!("loading the populations failed: {e}"))?;
            println!("loaded {n} population row(s) from {}", file.display());
            Ok(())
        }
        Command::Stats {
            action: StatsAction::Rebuild,
        } => {
            let store = open_store(&settings, settings.db_pool_size)?;
            let n = crate::services::stats::rebuild(&store)
                .map_err(|e| anyhow::anyhow!("rebuilding the statistics failed: {e}"))?;
            println!("counted {n} stored resource(s) again");
            Ok(())
        }
        Command::Residents {
            action: ResidentsAction::Relink,
        } => {
            let store = open_store(&settings, settings.db_pool_size)?;
            let (patients, resources) = crate::services::residents::relink::relink_existing(&store)
                .map_err(|e| anyhow::anyhow!("relinking failed: {e}"))?;
            println!("linked {patients} Patient(s) and {resources} other resource(s)");
            Ok(())
        }
        Command::Audit {
            action: AuditAction::Verify { expect, seal },
        } => {
            let expect = match expect.as_deref() {
                None => None,
                Some(e) => {
                    let (seq, hash) = e
                        .split_once(':')
                        .and_then(|(s, h)| Some((s.parse::<i64>().ok()?, h.to_owned())))
                        .ok_or_else(|| anyhow::anyhow!("--expect takes POSITION:HASH"))?;
                    Some((seq, hash))
                }
            };
            let store = open_store(&settings, 2)?;
            if seal {
                let waiting = crate::services::audit::seal_committed(
                    &store,
                    std::time::Duration::from_secs(30),
                )
                .map_err(|e| anyhow::anyhow!("sealing failed: {e}"))?;
                if waiting > 0 {
                    println!(
                        "{waiting} record(s) still wait for a database transaction that is \
                         running; they are sealed when it ends"
                    );
                }
            }
            let keys = store.protection().clone();
            let report = store
                .read(|conn| {
                    crate::services::audit::verify(
                        conn,
                        &keys,
                        expect.as_ref().map(|(s, h)| (*s, h.as_str())),
                    )
                })
                .map_err(|e| anyhow::anyhow!("verifying failed: {e}"))?;
            println!(
                "checked {} record(s) from position {}; head: {}",
                report.checked,
                report.start.0,
                report
                    .head
                    .as_ref()
                    .map_or("none".to_owned(), |(s, h)| format!("{s}:{h}"))
            );
            if report.problems.is_empty() {
                println!("the audit chain is intact");
                Ok(())
            } else {
                for p in &report.problems {
                    println!("PROBLEM: {p}");
                }
                std::process::exit(1);
            }
        }
        Command::Keys { action } => keys(&settings, action),
        Command::Fixtures {
            action:
                FixturesAction::Generate {
                    residents,
                    seed,
                    out,
                    slots_from,
                },
        } => {
            let s = crate::fixtures::generate_from(residents, seed, &slots_from, &out)?;
            println!(
                "{} residents, {} institutions: {} bundles, {} entries ({})",
                s.residents,
                s.institutions,
                s.bundles,
                s.entries,
                s.by_type
                    .iter()
                    .map(|(t, n)| format!("{t} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!(
                "slot pool (slots.json): {} Schedules, {} Slots",
                s.schedules, s.slots
            );
            Ok(())
        }
    }
}

fn keys(settings: &Settings, action: KeysAction) -> anyhow::Result<()> {
    use crate::protect::{KeyEntry, KeyringFile};
    let path = settings.keyring_path();
    match action {
        KeysAction::List => {
            let file = KeyringFile::read(&path)?;
            let last = file.keys.len() - 1;
            for (i, k) in file.keys.iter().enumerate() {
                let state = if i == last {
                    "active"
                } else {
                    "open and search only"
                };
                println!("{}  created {}  {state}", k.id, k.created);
            }
            Ok(())
        }
        KeysAction::Rotate => {
            let entry = KeyEntry::generate()?;
            let id = entry.id.clone();
            if path.exists() {
                let mut file = KeyringFile::read(&path)?;
                file.keys.push(entry);
                file.replace(&path)?;
            } else {
                KeyringFile { keys: vec![entry] }.write_new(&path)?;
            }
            println!("key {id} added to {} and active", path.display());
            println!(
                "next: restart the servers (they then seal with it and search under every key), \
                 then run `huimin keys reencrypt`, then `huimin keys retire <old id>`"
            );
            Ok(())
        }
        KeysAction::Reencrypt => {
            let store = open_store(settings, 2)?;
            let r = crate::services::rekey::reencrypt(&store)
                .map_err(|e| anyhow::anyhow!("re-encryption failed: {e}"))?;
            println!(
                "sealed again: {} resource(s), {} version(s); {} resident key(s) moved, {} stale conditional key(s) dropped",
                r.resources, r.versions, r.resident_keys, r.stale_keys
            );
            Ok(())
        }
        KeysAction::Retire { id } => {
            let mut file = KeyringFile::read(&path)?;
            let Some(at) = file.keys.iter().position(|k| k.id == id) else {
                anyhow::bail!("no key {id} in {}", path.display());
            };
            if at == file.keys.len() - 1 {
                anyhow::bail!("{id} is the active key: rotate first");
            }
            let store = open_store(settings, 2)?;
            let left = crate::services::rekey::rows_under(&store, &id)
                .map_err(|e| anyhow::anyhow!("checking the key's use failed: {e}"))?;
            if left > 0 {
                anyhow::bail!(
                    "key {id} still protects {left} stored row(s): run `huimin keys reencrypt` first"
                );
            }
            let chained = crate::services::rekey::seals_under(&store, &id)
                .map_err(|e| anyhow::anyhow!("checking the key's use failed: {e}"))?;
            if chained > 0 {
                anyhow::bail!(
                    "key {id} chained {chained} audit record(s), which it alone verifies: it stays \
                     until the retention period has purged them"
                );
            }
            file.keys.remove(at);
            file.replace(&path)?;
            store.forget_key(&id)?;
            println!("key {id} retired from {}", path.display());
            Ok(())
        }
    }
}

/// The database of `settings`, migrated and opened, for a command that works on it beside or
/// instead of a running server.
fn open_store(settings: &Settings, pool_size: u32) -> anyhow::Result<store::Store> {
    let db = settings.database()?;
    store::migrate(&db)?;
    store::Store::open(
        &db,
        pool_size,
        settings.protection()?,
        crate::startup::thresholds(settings),
    )
}
