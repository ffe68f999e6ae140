"""All SQL lives here: tables, migrations, and one store class per aggregate."""
