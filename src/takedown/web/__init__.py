"""Server-rendered public pages: the report form and the reporter's status page.

They live apart from the JSON API because their audience is different: a frightened
parent or a teenager on a phone, possibly with JavaScript off, who needs plain
language and a page that works everywhere, not an OpenAPI schema.
"""
