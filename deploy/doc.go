// Package deploy holds the tests of the SAM stack (template.yaml, samconfig.toml).
package deploy
