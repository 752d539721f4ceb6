"""Test helpers shared by the suites: stand-ins of outside services and request builders."""
