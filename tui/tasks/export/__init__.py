"""Exports of a profile's plan to other tools (UI-free).  ``ansible``: an inventory and a
playbook with a role per service (see docs/ansible.md)."""
