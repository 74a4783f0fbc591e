"""What the CLI's commands do beyond one conversion: ``migrate``, ``diff``, ``info``'s summary."""
