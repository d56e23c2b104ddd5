//! `streamwarden notify-test`: a sample kill sent to every `[[notify]]` target, so the owner
//! sees each one before arming anything (see `crate::notify::send_samples`).

use std::path::Path;

use crate::Failure;
use crate::engine::open;
use crate::notify;

use super::Done;

pub async fn run(config_path: Option<&Path>) -> Result<Done, Failure> {
    let config = open::load(config_path)?;
    let tried = notify::send_samples(&config).await?;
    let mut failed = 0;
    for t in &tried {
        let on = crate::state::AuditAction::names(&t.on);
        match &t.result {
            Ok(()) => println!("{} ({}): sent; told of {on}", t.name, t.kind),
            Err(e) => {
                failed += 1;
                println!("{} ({}): NOT sent: {e}", t.name, t.kind);
            }
        }
    }
    if failed == 0 {
        Ok(Done::Ok)
    } else {
        eprintln!(
            "error: {failed} of {} notification targets failed",
            tried.len()
        );
        Ok(Done::Partly)
    }
}
