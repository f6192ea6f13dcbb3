"""Infrastructure that knows no domain: it imports the standard library only, and the apps pass
it what it must do (where to write, what to call). At the bottom of the layers, below tenancy."""
