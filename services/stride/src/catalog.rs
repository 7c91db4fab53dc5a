//! Every rule-set version under the guidelines folder, loaded and checked once at start.
//! Old versions stay: the audit log points at them and replay needs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stride_guideline::{RuleSet, RuleSetVersion};

#[derive(Debug, Default)]
pub struct Catalog {
    sets: BTreeMap<(String, RuleSetVersion), Arc<RuleSet>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("no rule sets under {0}")]
    Empty(PathBuf),
}

/// Rule-set files are `<id>/<version>.yaml`; vignettes beside them are not rule sets.
pub fn rule_set_files(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    fn io(path: &Path) -> impl Fn(std::io::Error) -> CatalogError + '_ {
        move |source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let sub = entry.map_err(io(dir))?.path();
        if !sub.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&sub).map_err(io(&sub))? {
            let p = f.map_err(io(&sub))?.path();
            let is_version = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".yaml"))
                .is_some_and(|v| v.parse::<RuleSetVersion>().is_ok());
            if is_version {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Load one file and check that its name agrees with what it says it is.
pub fn load_file(path: &Path) -> Result<RuleSet, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| CatalogError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let rs = RuleSet::from_yaml(&text).map_err(|e| invalid(e.to_string()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem != rs.doc.version.to_string() {
        return Err(invalid(format!(
            "file name says {stem} but the rule set says {}",
            rs.doc.version
        )));
    }
    let folder = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if folder != rs.doc.id {
        return Err(invalid(format!(
            "folder is `{folder}` but the rule set id is `{}`",
            rs.doc.id
        )));
    }
    Ok(rs)
}

impl Catalog {
    pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
        let mut sets = BTreeMap::new();
        for path in rule_set_files(dir)? {
            let rs = load_file(&path)?;
            sets.insert((rs.doc.id.clone(), rs.doc.version), Arc::new(rs));
        }
        if sets.is_empty() {
            return Err(CatalogError::Empty(dir.to_path_buf()));
        }
        Ok(Catalog { sets })
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    pub fn get(&self, id: &str, version: &RuleSetVersion) -> Option<&Arc<RuleSet>> {
        self.sets.get(&(id.to_owned(), *version))
    }

    /// The newest active version of a guideline: what a new hook call is decided by.
    pub fn current(&self, id: &str) -> Option<&Arc<RuleSet>> {
        self.sets
            .range(
                (
                    id.to_owned(),
                    RuleSetVersion {
                        major: 0,
                        minor: 0,
                        patch: 0,
                    },
                )..,
            )
            .take_while(|((i, _), _)| i == id)
            .filter(|(_, rs)| rs.doc.status == stride_guideline::model::Status::Active)
            .map(|(_, rs)| rs)
            .last()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<RuleSet>> {
        self.sets.values()
    }
}
