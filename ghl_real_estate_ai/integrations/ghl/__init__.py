"""integrations/ghl."""
