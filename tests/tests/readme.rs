//! The README cannot drift: its configuration table matches the flags in the code, every
//! script and option it shows exists, every route it documents is served, and every command
//! it gives that runs without hardware or a registry is run by this suite or by scripts/test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap()
}

/// One row of the README's configuration table: (service, flag, env, default).
type Row = (String, String, String, Option<String>);

/// The configuration table, with "both" rows expanded to led and button.
fn documented_settings(readme: &str) -> BTreeSet<Row> {
    let table = section(readme, "## Configuration");
    let unquote = |cell: &str| {
        let cell = cell.trim();
        cell.strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .map(str::to_owned)
    };
    let mut rows = BTreeSet::new();
    for line in table.lines().filter(|line| line.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').collect();
        let (Some(flag), Some(env)) = (unquote(cells[2]), unquote(cells[3])) else {
            continue; // the header and the separator
        };
        let default = unquote(cells[4]);
        assert!(
            default.is_some() || cells[4].trim() == "none",
            "{line}: a default is `value` or none"
        );
        let services: &[&str] = match cells[1].trim() {
            "both" => &["led", "button"],
            "led" => &["led"],
            "button" => &["button"],
            "simulator" => &["simulator"],
            other => panic!("unknown service {other:?} in {line}"),
        };
        for service in services {
            rows.insert((
                service.to_string(),
                flag.clone(),
                env.clone(),
                default.clone(),
            ));
        }
    }
    rows
}

/// Every setting each binary's command line has, read from clap itself.
fn settings_in_code() -> BTreeSet<Row> {
    use clap::CommandFactory;
    let commands = [
        ("led", led_service::config::Cli::command()),
        ("button", button_service::config::Cli::command()),
        ("simulator", simulator::config::Cli::command()),
    ];
    let mut rows = BTreeSet::new();
    for (service, command) in commands {
        let settings = service_kit::args::reference(&command);
        assert!(settings.len() >= 4, "{service}: {settings:?}");
        for setting in settings {
            rows.insert((
                service.to_owned(),
                setting.flag,
                setting.env,
                setting.default,
            ));
        }
    }
    rows
}

/// The text of a README section, up to the next `## ` heading.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("the README has no {heading:?}"))
        .split("\n## ")
        .next()
        .unwrap()
}

#[test]
fn the_configuration_table_lists_exactly_the_settings_each_binary_takes() {
    let documented = documented_settings(&read("README.md"));
    let in_code = settings_in_code();
    let missing: Vec<_> = in_code.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&in_code).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README configuration table vs each binary's flags (service, flag, env, default):\nnot documented: {missing:#?}\ndocumented but not in the code: {stale:#?}"
    );
}

#[test]
fn compose_variables_in_the_readme_exist_in_the_compose_files() {
    let readme = read("README.md");
    let compose = read("docker-compose.yml")
        + &read("docker-compose.override.yml")
        + &read("docker-compose.device.yml")
        + &read("docker-compose.token.yml");
    let paragraph = readme
        .split("Compose also reads")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let mut seen = 0;
    for name in paragraph.split('`').skip(1).step_by(2) {
        if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            assert!(
                compose.contains(&format!("${{{name}")),
                "{name} is not used by the compose files"
            );
            seen += 1;
        }
    }
    assert!(seen >= 6, "the paragraph lost its variables");
    for name in ["COMPOSE_FILE", "I2C_DEVICE", "I2C_GID"] {
        assert!(
            read("init_os.sh").contains(&format!("{name}=")),
            "init_os.sh must write {name}"
        );
    }
}

#[test]
fn every_script_and_option_shown_exists() {
    let readme = read("README.md");
    let mut checked = 0;
    // Each command of a line on its own: `a && b | c` is three.
    for line in readme
        .lines()
        .flat_map(|line| line.split("&&"))
        .flat_map(|part| part.split(" | "))
    {
        for word in line.split(|c: char| c.is_whitespace() || c == '`' || c == '(' || c == ')') {
            if let Some(script) = word
                .strip_prefix("scripts/")
                .filter(|s| !s.is_empty() && !s.contains('<'))
            {
                let script = script.trim_end_matches([',', '.', ':', ';']);
                let path = root().join("scripts").join(script);
                assert!(
                    path.exists(),
                    "README names scripts/{script}, which does not exist"
                );
                let source = std::fs::read_to_string(&path).unwrap();
                // Every --option on the same line must be one the script handles.
                for option in line.split_whitespace().filter(|w| w.starts_with("--")) {
                    let option = option.trim_end_matches([',', '.', ';', '`', ')']);
                    assert!(source.contains(option), "scripts/{script} has no {option}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "only {checked} script mentions found");
    let init = read("init_os.sh");
    for option in ["--dry-run", "--bus"] {
        assert!(init.contains(option) && readme.contains(option));
    }
}

#[test]
fn every_documented_route_is_served() {
    let readme = read("README.md");
    let led_api = read("led-service/src/api.rs");
    let simulator_api = read("simulator/src/api.rs");
    let button_api = read("button-service/src/lib.rs");
    let api = readme
        .split("## The API")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut routes = BTreeSet::new();
    for word in api.split('`') {
        for part in word.split_whitespace() {
            if part.starts_with('/') && part.len() > 1 && !part.starts_with("//") {
                routes.insert(part.trim_end_matches([',', '.']).to_owned());
            }
        }
    }
    assert!(routes.len() >= 15, "{routes:?}");
    for route in routes {
        let pattern = format!("\"{route}\"");
        assert!(
            led_api.contains(&pattern)
                || simulator_api.contains(&pattern)
                || button_api.contains(&pattern),
            "README documents {route}, which no router serves"
        );
    }
    // The curl examples: every spelling shown is one the parser accepts.
    let state = read("led-service/src/state.rs");
    let toggling = readme
        .split("## Toggling the LED by hand")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut spellings = 0;
    for token in toggling.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')') {
        let Some((_, spelling)) = token.rsplit_once('/') else {
            continue;
        };
        if token.starts_with("http://") || token.starts_with('/') {
            if spelling.is_empty()
                || spelling == "led"
                || !spelling.chars().all(char::is_alphanumeric)
            {
                continue;
            }
            assert!(
                state.contains(&format!("\"{}\"", spelling.to_lowercase())),
                "/{spelling} is not accepted"
            );
            spellings += 1;
        }
    }
    assert!(spellings >= 12, "only {spellings} spellings found");
}

#[test]
fn the_commands_without_hardware_are_run_by_the_test_suite() {
    let readme = read("README.md");
    let test_script = read("scripts/test");
    let compose_test = read("tests/tests/compose.rs") + &read("tests/tests/support/mod.rs");
    // Quick start and device start: compose up, exercised by the end-to-end tests.
    assert!(readme.contains("docker compose up -d"));
    assert!(compose_test.contains("\"up\", \"-d\""));
    // Toggling by hand: POST /true with curl from the host, and GET /led.
    assert!(readme.contains("curl -X POST http://localhost:8080/true"));
    assert!(compose_test.contains("\"curl\"") && compose_test.contains("/true"));
    assert!(compose_test.contains("\"/led\""));
    // Building images for arm64 from local binaries, and the test command itself.
    assert!(readme.contains("scripts/build-images --arch arm64"));
    assert!(test_script.contains("scripts/build-images --arch all"));
    assert!(read(".ci/run").contains("scripts/test"));
    // init_os.sh --dry-run: the fake-root tests run it.
    assert!(read("tests/tests/init_os.rs").contains("--dry-run"));
}

#[test]
fn the_device_steps_match_what_init_os_prints_and_takes() {
    let readme = read("README.md");
    let device = readme
        .split("## On the device")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let init = read("init_os.sh");
    // The start command it prints is one of the two the README shows, for each compose
    // (tests/tests/init_os.rs checks what it prints for each).
    assert!(init.contains("Start it with: $(start_command)"));
    for (assignment, command) in [
        (
            "compose=docker-compose\n",
            "docker-compose pull && docker-compose up -d",
        ),
        ("compose=\"docker compose\"\n", "docker compose up -d"),
    ] {
        assert!(init.contains(assignment), "init_os.sh lost {assignment:?}");
        assert!(device.contains(command), "README lacks {command}");
    }
    assert!(init.contains("printf '%s' \"docker-compose pull && docker-compose up -d\""));
    // Every option it takes, and the overlay line it writes, are the README's.
    for option in [
        "--dry-run",
        "--bus N",
        "--pi-i2c gpio",
        "--pi-i2c arm",
        "--pi-baudrate",
    ] {
        assert!(init.contains(option), "init_os.sh has no {option}");
        assert!(
            device.contains(option),
            "README's device steps lack {option}"
        );
    }
    let overlay = "dtoverlay=i2c-gpio,bus=3,i2c_gpio_sda=2,i2c_gpio_scl=3";
    assert!(init.contains(overlay) && device.contains(overlay));
    assert!(init.contains("Nothing to change") && device.contains("Nothing to change"));
    assert!(init.contains("i2cdetect -y -r") && !init.contains("i2cdetect -y $"));
    assert!(
        !readme.contains("i2cdetect -y 1"),
        "README: i2cdetect needs -r"
    );
}
