"""Review's REST resources (Django REST framework): thin views over the same services and
selectors as the browser, with permissions from `medcot.permissions`."""
