"""``empo compare``: runs that differ only in the method, evaluated side by side with paired bootstrap
statistics, and sweeps that train what is missing first."""
