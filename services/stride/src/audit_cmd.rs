//! `stride audit verify | export | replay`: the decision log from the command line.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use futures_util::StreamExt;
use stride_store::AuditQuery;

use crate::audit::{to_event, to_json};
use crate::cli::AuditCommand;
use crate::config::Settings;
use crate::startup::connect_checked;
use stride_app::catalog::Catalog;
use stride_app::replay::replay;
use stride_store::seal::{AuditKeys, Checkpoint};

/// Checkpoints of an anchor file, one JSON object per line.
fn read_checkpoints(path: &std::path::Path) -> Result<Vec<Checkpoint>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("{} line {}: not a checkpoint: {e}", path.display(), i + 1))
        })
        .collect()
}

pub async fn run(command: AuditCommand, settings: Settings) -> ExitCode {
    match execute(command, settings).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stride: {e}");
            ExitCode::from(2)
        }
    }
}

async fn execute(
    command: AuditCommand,
    settings: Settings,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Key files are handled without a database.
    match &command {
        AuditCommand::Keygen { kid, rotate } => {
            let previous = rotate.as_deref().map(AuditKeys::load).transpose()?;
            println!("{}", AuditKeys::generate(kid, previous.as_ref())?);
            return Ok(ExitCode::SUCCESS);
        }
        AuditCommand::PublicKeys { file } => {
            println!("{}", AuditKeys::load(file)?.public_only());
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    // Never migrates: the auditor runs this with the service role's credentials (a pod's),
    // which may read the log but not change the schema.
    let store = connect_checked(&settings).await?;
    let code = match command {
        AuditCommand::Verify { anchor, keys } => {
            let keys = match keys {
                Some(path) => Some(std::sync::Arc::new(AuditKeys::load(&path)?)),
                None => settings.audit_keys.clone(),
            };
            let outside = match &anchor {
                Some(path) => read_checkpoints(path)?,
                None => Vec::new(),
            };
            if !outside.is_empty() && keys.is_none() {
                return Err("--anchor needs the keys that signed the checkpoints (--keys or STRIDE_AUDIT_KEY_FILE)".into());
            }
            let check = stride_app::decision_log::check_chain(
                store.as_ref(),
                &AuditQuery::default(),
                keys.as_ref().map(|k| &k.verify),
                &outside,
            )
            .await?;
            println!("{}", stride_app::decision_log::report(&check));
            if check.broken.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        AuditCommand::Export {
            format,
            out,
            patient,
        } => {
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let bundle = format == "bundle";
            let query = AuditQuery {
                patient_ref: patient
                    .as_deref()
                    .map(|p| {
                        stride_store::PatientRef::parse(p)
                            .ok_or("--patient: a Patient reference (Patient/{id}, or the id)")
                    })
                    .transpose()?,
                ..AuditQuery::default()
            };
            let tty = std::io::stderr().is_terminal();
            let mut rows = store.audit_stream(&query, true);
            let mut n: u64 = 0;
            if bundle {
                write!(sink, r#"{{"resourceType":"Bundle","type":"collection""#)?;
            }
            while let Some(row) = rows.next().await {
                let a = row?;
                if bundle {
                    write!(
                        sink,
                        "{}{}",
                        if n == 0 { r#","entry":["# } else { "," },
                        serde_json::json!({"resource": to_event(&a)?})
                    )?;
                } else {
                    writeln!(sink, "{}", to_json(&a))?;
                }
                n += 1;
                if n.is_multiple_of(10_000) {
                    if tty {
                        eprint!("\rexported {n} entries");
                    } else {
                        eprintln!("exported {n} entries");
                    }
                }
            }
            if bundle {
                write!(sink, "{}", if n == 0 { "}" } else { "]}" })?;
            }
            sink.flush()?;
            eprintln!("{}exported {n} entries", if tty { "\r" } else { "" });
            ExitCode::SUCCESS
        }
        AuditCommand::Retention { keep_months } => {
            // Retention appends a checkpoint where it cuts each chain; in a sealed log an
            // unsealed checkpoint vouches for nothing, and verify would call the cut a break.
            let sealing = settings
                .audit_keys
                .as_ref()
                .is_some_and(|k| k.sealer.is_some());
            if !sealing && store.chain_heads().await?.iter().any(|h| h.seal.is_some()) {
                return Err("the audit log is sealed: retention must seal the checkpoint it writes; run it with the service's key file (STRIDE_AUDIT_KEY_FILE)".into());
            }
            let today = time::OffsetDateTime::now_utc().date();
            // The first day of the month `keep_months` before this one.
            let months =
                today.year() * 12 + i32::from(today.month() as u8) - 1 - keep_months as i32;
            let month = time::Month::try_from((months.rem_euclid(12) + 1) as u8)?;
            let cutoff = time::Date::from_calendar_date(months.div_euclid(12), month, 1)?;
            let dropped = store.drop_audit_before(cutoff).await?;
            println!(
                "{}",
                serde_json::json!({"before": cutoff.to_string(), "droppedPartitions": dropped})
            );
            ExitCode::SUCCESS
        }
        AuditCommand::Anchor { out } => {
            let keys = settings
                .audit_keys
                .clone()
                .ok_or("anchoring needs the service's key file (STRIDE_AUDIT_KEY_FILE)")?;
            let sealer = keys
                .sealer
                .clone()
                .ok_or("STRIDE_AUDIT_KEY_FILE holds no signing key (`sign`)")?;
            let time = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)?;
            let mut lines = String::new();
            for head in store.chain_heads().await? {
                // A head this check cannot vouch for is not cemented into a checkpoint.
                stride_store::audit::sealed(&head).map_err(|r| {
                    format!(
                        "tenant {}: entry {}: {r}",
                        head.entry.tenant.as_str(),
                        head.seq
                    )
                })?;
                if let Some(seal) = &head.seal {
                    keys.verify
                        .verify(seal, head.hash.as_bytes())
                        .map_err(|r| {
                            format!(
                                "tenant {}: entry {}: {r}",
                                head.entry.tenant.as_str(),
                                head.seq
                            )
                        })?;
                }
                let cp = Checkpoint::new(&sealer, &head.entry.tenant, head.seq, &head.hash, &time);
                lines.push_str(&serde_json::to_string(&cp)?);
                lines.push('\n');
            }
            match &out {
                // Appended in one write: a crash leaves whole lines (O_APPEND).
                Some(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?
                    .write_all(lines.as_bytes())?,
                None => std::io::stdout().lock().write_all(lines.as_bytes())?,
            }
            eprintln!("anchored {} chain(s)", lines.lines().count());
            ExitCode::SUCCESS
        }
        AuditCommand::Keygen { .. } | AuditCommand::PublicKeys { .. } => {
            unreachable!("handled above")
        }
        AuditCommand::Replay {
            entry,
            with_version,
        } => {
            let catalog = Catalog::load(settings.guidelines()?)?;
            let id = uuid::Uuid::parse_str(&entry)
                .map_err(|_| "ENTRY must be an audit entry id (a UUID)")?;
            let a = store.audit_entry(id).await?;
            let r = replay(&catalog, &a, with_version.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            if r.identical {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}
