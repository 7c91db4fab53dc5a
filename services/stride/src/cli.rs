//! The `stride` command line.

use std::path::PathBuf;
use stride_store::TenantId;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "stride",
    version,
    about = "Stride: CDS Hooks clinical decision support from versioned guideline rule sets"
)]
pub struct Cli {
    /// TOML configuration file; STRIDE_* environment variables override it.
    #[arg(long, global = true, env = "STRIDE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, then serve HTTP until SIGTERM.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Serve in development mode: also trust a local key (see `stride token`). Loopback only.
    Dev,
    /// Print a token signed with the development key (after `stride dev` has created it).
    Token {
        /// cds-client (an EHR calling hooks) or staff.
        #[arg(long, default_value = "cds-client")]
        kind: String,
        /// The CDS service the token is for (cds-client); default: the first patient-view
        /// service the rule-set folder declares.
        #[arg(long)]
        service: Option<String>,
        /// Space-separated scopes (staff), e.g. "careplan.read audit.read"; default: what the
        /// staff pages offer (careplan.read careplan.review audit.read analytics.read
        /// guideline.approve).
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        ttl: i64,
    },
    /// Check and test rule sets.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// The decision log: verify the hash chains, export, replay a decision.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk every tenant's hash chain; report the first broken link (exit 1 when broken).
    /// With keys (`--keys`, else STRIDE_AUDIT_KEY_FILE) every seal is checked; with
    /// `--anchor` the chains must hold every checkpoint of that file (a deleted tail or a
    /// re-chained log shows).
    Verify {
        /// Checkpoints written by `stride audit anchor` (JSON lines).
        #[arg(long)]
        anchor: Option<PathBuf>,
        /// A key file; its public keys are enough (`stride audit public-keys`).
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Sign a checkpoint of every tenant's chain head with the service's key and append it,
    /// one JSON line per tenant, to a file kept outside the database (or standard output, for
    /// an object-lock bucket). Refuses a head whose seal does not verify.
    Anchor {
        /// Append here instead of writing to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a new key file with a fresh signing key; `--rotate FILE` keeps that file's
    /// public keys, so entries sealed before verify.
    Keygen {
        #[arg(long)]
        kid: String,
        #[arg(long)]
        rotate: Option<PathBuf>,
    },
    /// Print a key file's public keys only: what an auditor needs to verify.
    PublicKeys { file: PathBuf },
    /// Export entries as NDJSON (default) or a FHIR Bundle of AuditEvents, streamed.
    Export {
        #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "bundle"])]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only this patient (e.g. Patient/123).
        #[arg(long)]
        patient: Option<String>,
    },
    /// Remove audit entries older than N whole months by dropping their monthly partitions
    /// (PostgreSQL), after recording in each chain where it was cut. Run as the owner.
    Retention {
        #[arg(long, env = "STRIDE_AUDIT_RETENTION_MONTHS")]
        keep_months: u32,
    },
    /// Re-evaluate an entry's stored facts with its rule-set version (or another).
    Replay {
        entry: String,
        #[arg(long)]
        with_version: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Schema and semantic checks of rule-set files (default: every file under the guidelines folder).
    Validate { paths: Vec<PathBuf> },
    /// Run each rule set's vignettes (`<version>.vignettes.yaml` beside it).
    Test {
        paths: Vec<PathBuf>,
        /// Print each vignette's decision trace.
        #[arg(long)]
        verbose: bool,
    },
    /// What a candidate version would change: every stored decision of its guideline decided
    /// again by it (or read from its shadow record), one line per changed decision, then a
    /// summary by transition. Progress on stderr. Needs the database, never migrates it.
    Impact {
        /// `guideline-id=version` of a loaded rule set (a draft too).
        #[arg(long)]
        candidate: String,
        /// Only decisions recorded on or after this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Only this tenant's decisions.
        #[arg(long, value_parser = tenant)]
        tenant: Option<TenantId>,
        #[arg(long, value_enum, default_value_t = ImpactFormat::Ndjson)]
        format: ImpactFormat,
    },
    /// Sign off a version for a clinic, as `POST …/$sign-off` does: approve it (or reject it
    /// with `--reason`), naming the impactHash of the report read (`rules impact --tenant`).
    Approve {
        /// `guideline-id=version`.
        #[arg(long)]
        candidate: String,
        #[arg(long, value_parser = tenant)]
        tenant: TenantId,
        /// Who signs off (recorded as `stride-cli|NAME`).
        #[arg(long = "as")]
        signer: String,
        /// The impactHash of the report read.
        #[arg(long)]
        impact: String,
        /// Reject instead of approving (a reason is required).
        #[arg(long)]
        reject: bool,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Put a signed-off version in force for a clinic, as `POST …/$activate` does (running
    /// servers read it back within seconds).
    Activate {
        /// `guideline-id=version`.
        #[arg(long)]
        candidate: String,
        #[arg(long, value_parser = tenant)]
        tenant: TenantId,
        /// Who activates (recorded as `stride-cli|NAME`).
        #[arg(long = "as")]
        signer: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImpactFormat {
    Ndjson,
    Csv,
    Text,
}

/// `--tenant`: a clinic's name as the trust file gives it (refused before anything runs when it
/// cannot be one).
fn tenant(text: &str) -> Result<TenantId, stride_store::TenantError> {
    TenantId::parse(text)
}
