//! Every setting each binary's command line takes, read from clap itself: what the README's
//! configuration table and the compose files are compared with.

use clap::CommandFactory;
use service_kit::args::Setting;

/// The services' command lines, by compose service name.
pub fn commands() -> [(&'static str, clap::Command); 3] {
    [
        ("led", led_service::config::Cli::command()),
        ("button", button_service::config::Cli::command()),
        ("simulator", simulator::config::Cli::command()),
    ]
}

/// Each service's settings that have an environment variable, in declaration order.
pub fn settings_in_code() -> Vec<(&'static str, Setting)> {
    commands()
        .into_iter()
        .flat_map(|(service, command)| {
            let settings = service_kit::args::reference(&command);
            assert!(settings.len() >= 4, "{service}: {settings:?}");
            settings.into_iter().map(move |setting| (service, setting))
        })
        .collect()
}
