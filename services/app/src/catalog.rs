//! Every rule-set version under the guidelines folder, loaded and checked once at start, and
//! each guideline's declaration (`guideline.yaml`: its CDS services, staff timeline and
//! published names). Old versions stay: the audit log points at them and replay needs them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use stride_guideline::{RuleSet, RuleSetVersion};
use stride_hooks::Hook;

#[derive(Debug, Default)]
pub struct Catalog {
    sets: BTreeMap<(String, RuleSetVersion), Arc<RuleSet>>,
    guidelines: BTreeMap<String, Declaration>,
}

/// The file beside a guideline's versions that declares what the service shows for it.
pub const DECLARATION: &str = "guideline.yaml";

/// What a guideline folder declares beside its rule-set versions. Not versioned: the service
/// ids are what EHRs register, whichever version answers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    pub services: Vec<Service>,
    /// Discovery's usageRequirements, after the sentence on tokens and the rule set.
    pub usage: String,
    /// The staff timeline: which facts, drawn how.
    #[serde(default)]
    pub timeline: Vec<Series>,
    pub published: Published,
    /// Who made this intervention and from what, as the US decision-support criterion asks
    /// (45 CFR 170.315(b)(11)(iv)(A)); dates per version where they differ from `effective`.
    pub source_attributes: crate::attributes::Declared,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub id: String,
    #[serde(deserialize_with = "hook")]
    pub hook: Hook,
    pub title: String,
    pub description: String,
    /// The guideline folder that declared it.
    #[serde(skip)]
    pub guideline: String,
}

fn hook<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Hook, D::Error> {
    let name = String::deserialize(d)?;
    Hook::from_name(&name).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "hook `{name}` is not one Stride answers ({})",
            Hook::names().join(", ")
        ))
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    pub fact: String,
    pub draw: Draw,
    /// The row's name on the chart and in its table.
    pub label: String,
}

/// How the timeline draws a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Draw {
    /// A 0–10 score line.
    Score,
    /// A count of days, as a line.
    Days,
    /// Values summed per week, as bars.
    WeeklySum,
}

/// Titles of the CodeSystems published for the guideline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub findings: String,
    pub decisions: String,
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

fn load_declaration(
    folder: &Path,
    id: &str,
    sets: &[&RuleSet],
) -> Result<Declaration, CatalogError> {
    let path = folder.join(DECLARATION);
    let invalid = |message: String| CatalogError::Invalid {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|source| CatalogError::Io {
        path: path.clone(),
        source,
    })?;
    let mut d: Declaration = serde_yaml::from_str(&text)
        .map_err(|e| invalid(format!("not a guideline declaration: {e}")))?;
    if d.services.is_empty() {
        return Err(invalid("declares no CDS service".into()));
    }
    for s in &mut d.services {
        // The id is a path segment of /cds-services/{id} and a token audience.
        let ok = !s.id.is_empty()
            && s.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(invalid(format!(
                "service id `{}` is not lower-case letters, digits and hyphens",
                s.id
            )));
        }
        s.guideline = id.to_owned();
    }
    for series in &d.timeline {
        if !sets
            .iter()
            .any(|rs| rs.doc.facts.contains_key(&series.fact))
        {
            return Err(invalid(format!(
                "timeline fact `{}` is a fact of no version of {id}",
                series.fact
            )));
        }
    }
    Ok(d)
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
        let ids: BTreeSet<String> = sets.keys().map(|(id, _)| id.clone()).collect();
        let mut guidelines = BTreeMap::new();
        let mut service_ids = BTreeSet::new();
        for id in ids {
            let versions: Vec<&RuleSet> = sets
                .iter()
                .filter(|((g, _), _)| *g == id)
                .map(|(_, rs)| rs.as_ref())
                .collect();
            let d = load_declaration(&dir.join(&id), &id, &versions)?;
            for s in &d.services {
                if !service_ids.insert(s.id.clone()) {
                    return Err(CatalogError::Invalid {
                        path: dir.join(&id).join(DECLARATION),
                        message: format!("service id `{}` is declared twice", s.id),
                    });
                }
            }
            guidelines.insert(id, d);
        }
        Ok(Catalog { sets, guidelines })
    }

    /// Every CDS service of every loaded guideline, by guideline then as declared.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.guidelines.values().flat_map(|d| &d.services)
    }

    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services().find(|s| s.id == id)
    }

    pub fn declaration(&self, guideline: &str) -> Option<&Declaration> {
        self.guidelines.get(guideline)
    }

    /// The ids of the loaded guidelines.
    pub fn guideline_ids(&self) -> impl Iterator<Item = &str> {
        self.guidelines.keys().map(String::as_str)
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

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARED: &str =
        "services:\n  - {id: x-view, hook: patient-view, title: T, description: D}\n\
                            usage: U\npublished: {findings: F, decisions: C}\n\
                            source_attributes: {publisher: P, citation: S, developer: D, funding: F}\n";

    /// A guidelines folder holding the synthetic test guideline's 1.0.0 under `id`, with
    /// `declaration`.
    fn folder(guidelines: &[(&str, Option<&str>)]) -> tempfile::TempDir {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/guidelines/synthetic-two-phase/1.0.0.yaml");
        let text = std::fs::read_to_string(root).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (id, declaration) in guidelines {
            let sub = dir.path().join(id);
            std::fs::create_dir_all(&sub).unwrap();
            let own = text.replacen("id: synthetic-two-phase", &format!("id: {id}"), 1);
            std::fs::write(sub.join("1.0.0.yaml"), own).unwrap();
            if let Some(d) = declaration {
                std::fs::write(sub.join(DECLARATION), d).unwrap();
            }
        }
        dir
    }

    fn refusal(dir: &tempfile::TempDir) -> String {
        match Catalog::load(dir.path()) {
            Ok(_) => panic!("refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn services_come_from_each_guidelines_declaration() {
        let other = DECLARED
            .replace("x-view", "other-view")
            .replace("patient-view", "order-sign");
        let dir = folder(&[("guide-a", Some(DECLARED)), ("guide-b", Some(&other))]);
        let c = Catalog::load(dir.path()).unwrap();
        let ids: Vec<(&str, &str, &str)> = c
            .services()
            .map(|s| (s.id.as_str(), s.hook.name(), s.guideline.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("x-view", "patient-view", "guide-a"),
                ("other-view", "order-sign", "guide-b")
            ]
        );
        assert_eq!(c.service("other-view").unwrap().guideline, "guide-b");
        assert_eq!(c.declaration("guide-a").unwrap().published.findings, "F");
    }

    #[test]
    fn a_guideline_without_a_declaration_is_refused_by_name() {
        let dir = folder(&[("guide-a", None)]);
        assert!(
            refusal(&dir).contains("guideline.yaml"),
            "{}",
            refusal(&dir)
        );
    }

    #[test]
    fn a_service_id_declared_twice_is_refused() {
        let dir = folder(&[("guide-a", Some(DECLARED)), ("guide-b", Some(DECLARED))]);
        assert!(
            refusal(&dir).contains("`x-view` is declared twice"),
            "{}",
            refusal(&dir)
        );
    }

    #[test]
    fn unknown_hooks_odd_ids_and_unknown_timeline_facts_are_refused() {
        for (bad, says) in [
            (
                DECLARED.replace("patient-view", "encounter-start"),
                "hook `encounter-start`",
            ),
            (DECLARED.replace("x-view", "x/view"), "service id `x/view`"),
            (
                format!("{DECLARED}timeline:\n  - {{fact: no_such_fact, draw: score, label: L}}\n"),
                "timeline fact `no_such_fact`",
            ),
            (format!("{DECLARED}colour: red\n"), "unknown field `colour`"),
            (
                "services: []\nusage: U\npublished: {findings: F, decisions: C}\n\
                 source_attributes: {publisher: P, citation: S, developer: D, funding: F}\n"
                    .into(),
                "declares no CDS service",
            ),
        ] {
            let dir = folder(&[("guide-a", Some(&bad))]);
            let got = refusal(&dir);
            assert!(got.contains(says), "{says}: {got}");
        }
    }
}
