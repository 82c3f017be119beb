//! The `huimin` command line: `serve` (default), `migrate`, `token`.

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
        /// Subject (defaults to the role).
        #[arg(long)]
        sub: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    telemetry::init(&settings.log_format, &settings.log_level);
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
            sub,
            ttl,
        } => {
            let sub = sub.unwrap_or_else(|| format!("{role:?}").to_lowercase());
            let token = auth::dev_token(
                &settings,
                &TokenRequest {
                    sub,
                    role,
                    scope,
                    org,
                    fhir_user,
                    ttl_secs: ttl,
                },
            )?;
            println!("{token}");
            Ok(())
        }
    }
}
