//! `stride rules validate` and `stride rules test`.

use std::path::{Path, PathBuf};

use stride_guideline::vignettes;

use crate::catalog::{load_file, rule_set_files, CatalogError};

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
