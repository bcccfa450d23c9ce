//! A nightly backup of `/etc`, in the shape most real backup jobs take:
//!
//! 1. provision a staging directory for the run,
//! 2. record when the backup started (`/bin/date`, run directly),
//! 3. archive the source into the staging directory (shell, `tar`),
//! 4. verify the archive and describe it as JSON (Python, with a pinned
//!    requirement; its retention policy arrives as JSON on stdin),
//! 5. publish the archive and its JSON description next to the earlier ones and
//!    prune those past retention (shell; the JSON arrives through `pipe_json`),
//!
//! and, whatever happened, remove the staging directory.

use pulsehost_sdk::prelude::*;

/// Where archives are kept (`archives/`) and staged (`staging/<run id>/`).
const BACKUP_ROOT: &str = "/var/tmp/pulsehost-backup";
/// What is backed up.
const BACKUP_SOURCE: &str = "/etc";

/// The environment every process of the task sees.
fn backup_env() -> [(&'static str, &'static str); 2] {
    [("BACKUP_ROOT", BACKUP_ROOT), ("BACKUP_SOURCE", BACKUP_SOURCE)]
}

/// Creates the run's staging directory and the archive directory.
const PROVISION: &str = r#"set -eu
staging="$BACKUP_ROOT/staging/$PULSEHOST_RUN_ID"
mkdir -p "$staging" "$BACKUP_ROOT/archives"
echo "staging backup of $BACKUP_SOURCE in $staging"
"#;

/// Archives the source. Files the host's user may not read are skipped, not
/// fatal: the archive is a best-effort copy of the configuration.
const ARCHIVE: &str = r#"set -eu
staging="$BACKUP_ROOT/staging/$PULSEHOST_RUN_ID"
tar --create --gzip --ignore-failed-read --warning=no-failed-read \
    --file "$staging/backup.tar.gz" \
    --directory "$(dirname "$BACKUP_SOURCE")" "$(basename "$BACKUP_SOURCE")"
echo "archived $BACKUP_SOURCE"
"#;

/// Checks the archive and prints its description as JSON.
const VERIFY: &str = r#"import hashlib
import json
import os
import sys
import tarfile

import six

policy = json.load(sys.stdin)
archive = os.path.join(os.environ["BACKUP_ROOT"], "staging", os.environ["PULSEHOST_RUN_ID"], "backup.tar.gz")

digest = hashlib.sha256()
with open(archive, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
with tarfile.open(archive, "r:gz") as tar:
    members = sum(1 for _ in tar)
if members == 0:
    sys.exit("archive %s is empty" % archive)

print(json.dumps({
    "label": six.ensure_str(policy["label"]),
    "source": os.environ["BACKUP_SOURCE"],
    "bytes": os.path.getsize(archive),
    "members": members,
    "sha256": digest.hexdigest(),
    "retention_days": int(policy["retention_days"]),
}))
"#;

/// Moves the archive and its description into `archives/` and prunes old ones.
/// The description (the previous step's JSON) arrives on stdin.
const PUBLISH: &str = r#"set -eu
staging="$BACKUP_ROOT/staging/$PULSEHOST_RUN_ID"
name="etc-$(date -u +%Y%m%dT%H%M%SZ)"
cat > "$staging/backup.json"
retention=$(sed -n 's/.*"retention_days": *\([0-9][0-9]*\).*/\1/p' "$staging/backup.json")
mv "$staging/backup.tar.gz" "$BACKUP_ROOT/archives/$name.tar.gz"
mv "$staging/backup.json" "$BACKUP_ROOT/archives/$name.json"
find "$BACKUP_ROOT/archives" -type f -mtime "+${retention:-14}" -print -delete
echo "published $name"
"#;

/// Removes the run's staging directory, whatever happened.
const CLEANUP: &str = r#"rm -rf "$BACKUP_ROOT/staging/$PULSEHOST_RUN_ID"
echo "removed staging directory"
"#;

/// The plugin.
struct Backup;

impl Plugin for Backup {
    fn manifest() -> Result<Manifest, String> {
        let task = Task::cron("nightly-backup", "30 2 * * *")
            .timezone("Europe/Berlin")
            .description("Archives /etc every night at 02:30 Berlin time and keeps 14 days of archives.")
            .timeout(Duration::from_secs(30 * 60))
            .retry(
                Retry::attempts(3)
                    .backoff(Duration::from_secs(60))
                    .max_backoff(Duration::from_secs(600)),
            )
            .starting_deadline(Duration::from_secs(60 * 60))
            .tags(["backup", "nightly"])
            .pipe_json(true)
            .provision(Exec::shell(PROVISION).envs(backup_env()))
            .cleanup(Exec::shell(CLEANUP).envs(backup_env()))
            .step(
                Step::binary("started-at", "/bin/date").args(["-u", "+backup started at %Y-%m-%dT%H:%M:%SZ"]),
            )
            .step(
                Step::shell("archive", ARCHIVE)
                    .envs(backup_env())
                    .timeout(Duration::from_secs(20 * 60)),
            )
            .step(
                Step::python("verify", VERIFY)
                    .requirement("six==1.16.0")
                    .envs(backup_env())
                    .stdin_json(r#"{"label": "etc", "retention_days": 14}"#),
            )
            .step(Step::shell("publish", PUBLISH).envs(backup_env()));

        Ok(Manifest::new("backup", env!("CARGO_PKG_VERSION"))
            .description("Nightly, verified backups of the host's configuration.")
            .task(task))
    }
}

pulsehost_sdk::export_plugin!(Backup);
