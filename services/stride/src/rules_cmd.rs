//! `stride rules validate`, `stride rules test` and `stride rules impact`.

use std::path::{Path, PathBuf};

use stride_guideline::vignettes;

use stride_app::catalog::{load_file, rule_set_files, CatalogError};

fn files(paths: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    if paths.is_empty() {
        rule_set_files(dir)
    } else {
        Ok(paths.to_vec())
    }
}

/// Returns the number of invalid files; prints one line per file.
pub fn validate(paths: &[PathBuf], dir: &Path) -> Result<usize, CatalogError> {
    let mut bad = 0;
    for p in files(paths, dir)? {
        match load_file(&p) {
            Ok(rs) => println!(
                "ok      {} ({} {}, sha256 {})",
                p.display(),
                rs.doc.id,
                rs.doc.version,
                &rs.content_hash[..12]
            ),
            Err(e) => {
                bad += 1;
                println!("INVALID {e}");
            }
        }
    }
    Ok(bad)
}

/// Returns the number of failed vignettes (a missing or broken vignette file counts as one).
pub fn test(paths: &[PathBuf], dir: &Path, verbose: bool) -> Result<usize, CatalogError> {
    let mut failed = 0;
    for p in files(paths, dir)? {
        let rs = match load_file(&p) {
            Ok(rs) => rs,
            Err(e) => {
                println!("INVALID {e}");
                failed += 1;
                continue;
            }
        };
        let vpath = p.with_file_name(format!("{}.vignettes.yaml", rs.doc.version));
        let parsed = std::fs::read_to_string(&vpath)
            .map_err(|e| e.to_string())
            .and_then(|t| vignettes::parse(&t));
        let file = match parsed {
            Ok(f) => f,
            Err(e) => {
                println!("FAIL    {}: {e}", vpath.display());
                failed += 1;
                continue;
            }
        };
        let mut passed = 0;
        for v in &file.vignettes {
            match v.run(&rs) {
                Ok(out) if out.failures.is_empty() => {
                    passed += 1;
                    println!("pass    {}", out.name);
                    if verbose {
                        print_trace(&out.decision);
                    }
                }
                Ok(out) => {
                    failed += 1;
                    println!("FAIL    {}", out.name);
                    for f in &out.failures {
                        println!("          {f}");
                    }
                    print_trace(&out.decision);
                }
                Err(e) => {
                    failed += 1;
                    println!("FAIL    {}: {e}", v.name);
                }
            }
        }
        println!(
            "{} {}: {passed}/{} vignettes passed",
            rs.doc.id,
            rs.doc.version,
            file.vignettes.len()
        );
    }
    Ok(failed)
}

fn print_trace(d: &stride_guideline::Decision) {
    println!("          phase: {:?}", d.phase);
    for t in &d.trace {
        let value = t
            .value
            .map(|v| format!("{v}"))
            .unwrap_or_else(|| "unknown".into());
        let threshold = t
            .threshold
            .map(|v| format!("{v}"))
            .unwrap_or_else(|| "?".into());
        println!(
            "          {:8} {:28} {value:>8} {} {threshold:<8} {:?}{}",
            t.check.as_deref().unwrap_or(&t.rule),
            t.fact,
            t.op,
            t.verdict,
            t.note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        );
    }
}

/// `stride rules impact`: stream the changes to stdout in `format`, then the summary.
pub async fn impact(
    settings: &crate::config::Settings,
    candidate: &str,
    since: Option<&str>,
    tenant: Option<stride_store::TenantId>,
    format: crate::cli::ImpactFormat,
) -> Result<stride_app::impact::Summary, Box<dyn std::error::Error>> {
    use crate::cli::ImpactFormat;
    use std::io::Write;
    let candidate: stride_app::impact::Candidate =
        candidate.parse().map_err(|e| format!("--candidate: {e}"))?;
    let since_us = since
        .map(|d| {
            time::Date::parse(d, &time::format_description::well_known::Iso8601::DATE)
                .map(|d| d.midnight().assume_utc().unix_timestamp() * 1_000_000)
                .map_err(|_| format!("--since: `{d}` is not YYYY-MM-DD"))
        })
        .transpose()?;
    let catalog = stride_app::catalog::Catalog::load(settings.guidelines()?)?;
    // The auditor's credentials are enough: this only reads the log.
    let store = crate::startup::connect_checked(settings).await?;
    let scope = stride_app::impact::Scope {
        candidate,
        since_us,
        tenant,
    };
    let keep = scope.tenant.clone().filter(|_| scope.since_us.is_none());
    let candidate_kept = scope.candidate.clone();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if format == ImpactFormat::Csv {
        writeln!(
            out,
            "audit_entry,tenant,patient,recorded_us,version,candidate,before,after,from"
        )?;
    }
    let mut failed: Option<std::io::Error> = None;
    let summary = stride_app::impact::report(
        store.as_ref(),
        &catalog,
        &scope,
        |c| {
            let written = match format {
                // The exact bytes the summary's impactHash is the hash of.
                ImpactFormat::Ndjson => write!(out, "{}", stride_app::impact::ndjson_line(c)),
                ImpactFormat::Csv => writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    c.audit_entry,
                    csv(c.tenant.as_str()),
                    csv(c.patient.as_deref().unwrap_or_default()),
                    c.recorded_us,
                    c.version,
                    c.candidate,
                    csv(&c.before.join(" ")),
                    csv(&c.after.join(" ")),
                    c.from
                ),
                ImpactFormat::Text => writeln!(
                    out,
                    "{}  {}  {}  {}",
                    c.audit_entry,
                    c.patient.as_deref().unwrap_or("-"),
                    c.version,
                    c.transition
                ),
            };
            if let Err(e) = written {
                failed.get_or_insert(e);
            }
        },
        1000,
        |n| eprintln!("impact: {n} decisions read"),
    )
    .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    // A whole clinic's report is one its staff may sign off on: kept, as the impact page keeps it.
    if let Some(tenant) = keep {
        let pins = pins(settings, &catalog)?;
        pins.load_activations(&catalog, &store.activations().await?);
        stride_app::governance::keep_report(
            store.as_ref(),
            &catalog,
            &pins,
            &tenant,
            &candidate_kept,
            &summary,
            None,
        )
        .await?;
    }
    match format {
        ImpactFormat::Ndjson => {
            writeln!(out, "{}", serde_json::json!({ "summary": summary }))?;
        }
        ImpactFormat::Csv => {
            writeln!(out)?;
            writeln!(out, "transition,count")?;
            for (t, n) in &summary.transitions {
                writeln!(out, "{},{n}", csv(t))?;
            }
        }
        ImpactFormat::Text => {
            writeln!(
                out,
                "{}: {} decisions, {} would change, {} unchanged ({} from shadow records, {} unreadable)",
                summary.candidate,
                summary.decisions,
                summary.changed,
                summary.unchanged,
                summary.from_shadow,
                summary.unreadable
            )?;
            for (t, n) in &summary.transitions {
                writeln!(out, "  {t}: {n}")?;
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// The versions in force as the service sees them (its configuration and the activations
/// recorded so far).
fn pins(
    settings: &crate::config::Settings,
    catalog: &stride_app::catalog::Catalog,
) -> Result<stride_app::pins::Pins, Box<dyn std::error::Error>> {
    let verifier = crate::startup::verifier(settings)?;
    Ok(stride_app::pins::Pins::new(
        catalog,
        &settings.guideline_versions,
        &settings.shadow_versions,
        &verifier,
    )?)
}

/// `stride rules approve` and `stride rules activate`: the same use cases as the API, by an
/// operator named with `--as`, audited like a staff member's.
pub async fn govern(
    settings: &crate::config::Settings,
    command: &crate::cli::RulesCommand,
) -> Result<String, Box<dyn std::error::Error>> {
    use crate::cli::RulesCommand;
    use std::sync::Arc;
    let (candidate, tenant, signer) = match command {
        RulesCommand::Approve {
            candidate,
            tenant,
            signer,
            ..
        }
        | RulesCommand::Activate {
            candidate,
            tenant,
            signer,
        } => (candidate, tenant, signer),
        _ => return Err("not a governance command".into()),
    };
    let candidate: stride_app::impact::Candidate =
        candidate.parse().map_err(|e| format!("--candidate: {e}"))?;
    let catalog = stride_app::catalog::Catalog::load(settings.guidelines()?)?;
    let store = crate::startup::connect_checked(settings).await?;
    let pins = pins(settings, &catalog)?;
    pins.load_activations(&catalog, &store.activations().await?);
    let caller = stride_auth::Caller {
        issuer: stride_app::governance::CLI_ISSUER.into(),
        subject: signer.clone(),
        tenant: tenant.clone(),
        all_tenants: false,
        timezone: None,
        kind: stride_auth::Kind::Staff,
        jti: None,
        expires_at: 0,
        scopes: vec!["guideline.approve".into()],
        patient: None,
        fhir_user: None,
    };
    // Entries say which command did it, where a request would give its route.
    let actor = stride_app::actor::Actor::new(
        caller,
        stride_app::actor::Stamp {
            trace_id: None,
            route: match command {
                RulesCommand::Approve { .. } => "stride rules approve",
                _ => "stride rules activate",
            }
            .into(),
            method: "command line".into(),
        },
    );
    match command {
        RulesCommand::Approve {
            impact,
            reject,
            reason,
            ..
        } => {
            let request = stride_app::governance::SignOffRequest {
                decision: if *reject { "reject" } else { "approve" }.into(),
                reason: reason.clone(),
                impact: impact.clone(),
            };
            // An operator at a terminal waits for the clinic's report however long it takes.
            let jobs = stride_app::impact_jobs::Jobs::new(store, Arc::new(catalog), Arc::new(pins));
            let s = stride_app::governance::sign_off(
                &jobs,
                &actor,
                &candidate.guideline,
                candidate.version,
                &request,
                std::time::Duration::from_secs(24 * 3600),
            )
            .await?;
            Ok(format!(
                "{}: {} {} for {} by {}",
                s.decision,
                s.guideline_id,
                s.version,
                s.tenant.as_str(),
                s.signer
            ))
        }
        _ => {
            let a = stride_app::governance::activate(
                store.as_ref(),
                &catalog,
                &pins,
                &actor,
                &candidate.guideline,
                candidate.version,
                tenant,
            )
            .await?;
            Ok(format!(
                "activated: {} {} for {} by {}",
                a.guideline_id,
                a.version,
                a.tenant.as_str(),
                a.activated_by
            ))
        }
    }
}
