"""modelmorph plugin (being written): registers no format yet."""
