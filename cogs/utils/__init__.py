"""Discord support code shared by the extensions in cogs/: who is asking, replies and the one
member-error path, persistent buttons, rendering, the publisher, autocomplete choices."""
