"""A real headless browser against a sandbox's Horizon: Debian's chromium driven by Selenium
(from PyPI) through Debian's chromedriver, so nothing is downloaded at test time.

`scripts/setup.sh --test` installs both; without them the e2e tests fail saying so."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 60   # seconds for a page (an Angular table fetches its rows after the page loads)


def missing() -> str:
    """Why no browser can run here ('' when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is missing (bash scripts/setup.sh --test installs chromium)"
    return ""


@contextmanager
def chromium():
    import os

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never fetches a browser

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--metrics-recording-only", "--no-default-browser-check"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def login(driver, base: str, user: str, password: str) -> None:
    """Fill Horizon's login form (the password goes over WebDriver, never argv)."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(base + "auth/login/")
    driver.find_element(By.ID, "id_username").send_keys(user)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def wait_text(driver, text: str, timeout: float = WAIT) -> bool:
    """``text`` shows on the page within ``timeout`` (across a page load still going on)."""
    from selenium.common.exceptions import (NoSuchElementException,
                                            StaleElementReferenceException, TimeoutException)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(
            lambda d: text in d.find_element(By.TAG_NAME, "body").text)
        return True
    except TimeoutException:
        return False


def left_login(driver, timeout: float = WAIT) -> bool:
    """The login form was accepted: the browser went on to the dashboard."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(lambda d: "/auth/login" not in d.current_url)
        return True
    except TimeoutException:
        return False


def page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def fonts_loaded(driver, timeout: float = 20) -> bool:
    """The page's web fonts (the icons) have loaded."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(
            lambda d: d.execute_script("return document.fonts.status") == "loaded")
        return True
    except TimeoutException:
        return False


def screenshot(driver, path: Path) -> None:
    fonts_loaded(driver)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
