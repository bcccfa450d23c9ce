//! Server-rendered pages: the only module that speaks `minijinja`. Templates
//! are compiled into the binary and escape every value for HTML (what plugins
//! and steps wrote is shown as text, never as markup).

use std::sync::LazyLock;

use minijinja::Environment;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("tasks.html", include_str!("templates/tasks.html")),
        ("runs.html", include_str!("templates/runs.html")),
        ("run.html", include_str!("templates/run.html")),
        ("pulses.html", include_str!("templates/pulses.html")),
        ("services.html", include_str!("templates/services.html")),
        ("plugins.html", include_str!("templates/plugins.html")),
    ] {
        // The templates ship with the binary; a broken one fails every test.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "dashboard template does not compile");
        }
    }
    env
});

/// The page `template` filled with `context`.
pub fn page(template: &str, context: &serde_json::Value) -> Result<String, String> {
    TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(context))
        .map_err(|e| format!("rendering {template}: {e}"))
}
